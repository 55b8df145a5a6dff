// Command gohello is a Go wasip1 program of about 2.7 MB for the engine's
// and the worker's benchmarks of large modules: it greets the name on stdin,
// or the world.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	name, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if name = strings.TrimSpace(name); name == "" {
		name = "World"
	}
	fmt.Printf("Hello, %s!\n", name)
}
