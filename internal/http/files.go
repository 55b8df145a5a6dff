package http

import (
	"archive/tar"
	"archive/zip"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Archive answers of the execute routes: Accept: application/zip or
// application/x-tar asks for the whole answer as one archive, result.json
// (the JSON answer without the files' content) and each file that came back
// under files/ at its path.
const (
	mediaZip = "application/zip"
	mediaTar = "application/x-tar"
)

// answerFormat reads the Accept header: mediaZip or mediaTar when the
// client prefers one of them to JSON, else "" (JSON).
func answerFormat(r *http.Request) (string, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return "", nil
	}
	best, bestQ := "", 0.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case mediaZip, mediaTar, "application/json", "*/*", "application/*":
		default:
			continue
		}
		if q > bestQ {
			best, bestQ = mt, q
		}
	}
	if best == mediaZip || best == mediaTar {
		return best, nil
	}
	return "", nil
}

// writeRunArchive answers a run as an archive of the given media type.
func writeRunArchive(w http.ResponseWriter, media string, ex *wasmwiz.Execution) error {
	answer := APIResult(ex.ID, ex.Result)
	answer.FilesApart = true
	result, err := json.Marshal(answer)
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "encoding the result")
	}
	ext := ".zip"
	if media == mediaTar {
		ext = ".tar"
	}
	h := w.Header()
	h.Set("Content-Type", media)
	h.Set("Content-Disposition", `attachment; filename="run-`+ex.ID+ext+`"`)
	h.Set("X-Run-Id", ex.ID)
	w.WriteHeader(http.StatusOK)
	entries := []archiveFile{{"result.json", result}}
	for _, f := range ex.Result.Files {
		if !f.Omitted {
			entries = append(entries, archiveFile{"files/" + f.Path, f.Data})
		}
	}
	// The status is sent: a failure from here on cuts the body short, which
	// the client sees as a broken archive.
	if media == mediaTar {
		_ = writeTar(w, entries)
	} else {
		_ = writeZip(w, entries)
	}
	return nil
}

type archiveFile struct {
	name string
	data []byte
}

func writeZip(w io.Writer, files []archiveFile) error {
	zw := zip.NewWriter(w)
	now := time.Now()
	for _, f := range files {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: now})
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.data); err != nil {
			return err
		}
	}
	return zw.Close()
}

func writeTar(w io.Writer, files []archiveFile) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	dirs := map[string]bool{}
	for _, f := range files {
		// Directories first, as tar readers expect them.
		for i := strings.IndexByte(f.name, '/'); i >= 0; i = next(f.name, i) {
			d := f.name[:i+1]
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now}); err != nil {
					return err
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// next returns the index of the slash after i in s, or -1.
func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
