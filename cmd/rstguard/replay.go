package main

import (
	"fmt"
	"os"
)

func cmdReplay(args []string) int {
	fmt.Fprintln(os.Stderr, "rstguard: not implemented yet")
	return 1
}
