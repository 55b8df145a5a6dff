// Command gomembomb is a Go wasip1 program that keeps allocating 1 MiB
// blocks until the Go runtime dies of running out of memory.
package main

import "fmt"

func main() {
	var keep [][]byte
	for i := 0; ; i++ {
		b := make([]byte, 1<<20)
		b[len(b)-1] = byte(i)
		keep = append(keep, b)
		if i%64 == 0 {
			fmt.Println("allocated", len(keep), "MiB")
		}
	}
}
