package wasmwiz

import (
	"bytes"
	"unicode/utf8"
)

// wasmMagic opens every WebAssembly binary.
var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// CheckPreamble returns EINVALID, with a message a module's author can act
// on, unless wasm opens with the preamble of a core module: the magic bytes
// and version 1. It reads at most the first 512 bytes, so that a server can
// refuse what is not a module before it spends anything scarce on it (a
// compile slot, a worker, a copy): the engine reads the rest.
func CheckPreamble(wasm []byte) error {
	switch {
	case len(wasm) == 0:
		return Errorf(EINVALID, "the module is empty")
	case len(wasm) < 4 || !bytes.Equal(wasm[:4], wasmMagic):
		if looksLikeText(wasm) {
			if bytes.Contains(wasm[:min(len(wasm), 512)], []byte("(module")) {
				return Errorf(EINVALID, "not a WebAssembly binary: this looks like the WebAssembly text format (.wat); compile it with wat2wasm first")
			}
			return Errorf(EINVALID, "not a WebAssembly binary: this is a text file")
		}
		return Errorf(EINVALID, "not a WebAssembly binary: it does not start with the magic bytes \\0asm")
	case len(wasm) < 8:
		return Errorf(EINVALID, "truncated module: %d bytes, shorter than the 8-byte header", len(wasm))
	}
	version := wasm[4:8]
	switch {
	case bytes.Equal(version, []byte{1, 0, 0, 0}):
		return nil
	case version[2] == 1 && version[3] == 0:
		// The component model's preamble: a 16-bit version, then layer 1.
		return Errorf(EINVALID, "components are not supported; build a core module for wasm32-wasip1")
	default:
		return Errorf(EINVALID, "unsupported WebAssembly binary version %d; only version 1 (core modules) is supported",
			uint32(version[0])|uint32(version[1])<<8|uint32(version[2])<<16|uint32(version[3])<<24)
	}
}

// looksLikeText reports whether b's first 512 bytes are UTF-8 text without
// control characters other than line breaks and tabs.
func looksLikeText(b []byte) bool {
	p := b[:min(len(b), 512)]
	if len(b) > len(p) {
		// A multi-byte rune may be cut at the end of the window.
		for i := 0; i < 3 && len(p) > 0 && !utf8.Valid(p); i++ {
			p = p[:len(p)-1]
		}
	}
	if !utf8.Valid(p) {
		return false
	}
	for _, c := range p {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}
