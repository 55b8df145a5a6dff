// Command gosample is the web page's Go sample (static/sample-go.wasm, built with
// make -C internal/http/web samples): a Go program compiled to
// WASI preview1 (GOOS=wasip1 GOARCH=wasm). It greets its arguments and
// counts what it read on stdin.
package main

import (
	"io"
	"os"
	"strconv"
	"strings"
)

func main() {
	in, _ := io.ReadAll(os.Stdin)
	who := "World"
	if len(os.Args) > 1 {
		who = strings.Join(os.Args[1:], " ")
	}
	os.Stdout.WriteString("Hello from Go, " + who + "!\n")
	os.Stdout.WriteString("stdin: " + strconv.Itoa(len(in)) + " bytes\n")
}
