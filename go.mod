module github.com/wasmwiz/wasmwiz

go 1.26.8
