// gofiles works on its working directory the way Go programs do: it lists
// it, reads in.txt, writes out/report.txt, and prints what it did.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	wd, err := os.Getwd()
	fmt.Println("wd", wd, err)
	entries, err := os.ReadDir(".")
	if err != nil {
		fmt.Println("readdir:", err)
		os.Exit(1)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	fmt.Println("entries", strings.Join(names, " "))
	in, err := os.ReadFile("in.txt")
	if err != nil {
		fmt.Println("read:", err)
		os.Exit(1)
	}
	if err := os.MkdirAll("out", 0o755); err != nil {
		fmt.Println("mkdir:", err)
		os.Exit(1)
	}
	report := fmt.Sprintf("%d bytes: %s", len(in), strings.ToUpper(string(in)))
	if err := os.WriteFile("out/report.txt", []byte(report), 0o644); err != nil {
		fmt.Println("write:", err)
		os.Exit(1)
	}
	_, err = os.ReadFile("../outside.txt")
	fmt.Println("outside:", err != nil)
	fmt.Println("done")
}
