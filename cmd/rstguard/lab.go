package main

import (
	"fmt"
	"os"
)

func cmdLab(args []string) int {
	fmt.Fprintln(os.Stderr, "rstguard: not implemented yet")
	return 1
}
