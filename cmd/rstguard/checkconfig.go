package main

import (
	"fmt"
	"os"
)

func cmdCheckConfig(args []string) int {
	fmt.Fprintln(os.Stderr, "rstguard: not implemented yet")
	return 1
}
