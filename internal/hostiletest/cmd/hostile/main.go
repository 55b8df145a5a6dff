// Command hostile writes the hostile test modules of package hostiletest:
//
//	go run ./internal/hostiletest/cmd/hostile -out internal/engine/testdata/hostile
//	go run ./internal/hostiletest/cmd/hostile -attacks -out /tmp/attacks
//
// The first writes the small examples the engine's tests and fuzz seeds
// use (committed); the second the compile bombs at the sizes that hurt, to
// try against a server by hand (not committed: tests generate them).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
)

func main() {
	out := flag.String("out", ".", "directory to write the modules to")
	attacks := flag.Bool("attacks", false, "write the compile bombs at their hurting sizes instead of the small examples")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(*out, name+".wasm"), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if *attacks {
		for _, a := range hostiletest.Attacks() {
			write(a.Name, a.Wasm())
			fmt.Printf("%s.wasm: %s\n", a.Name, a.Cost)
		}
		return
	}
	for _, ex := range hostiletest.Examples() {
		write(ex.Name, ex.Wasm)
	}
}
