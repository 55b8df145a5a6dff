//go:build !linux

package worker

import (
	"errors"
	"os"
)

// Without memfd, output travels in frames only.

func newOutputRegion() (*outputRegion, *os.File, error) {
	return nil, nil, errors.New("no output region on this platform")
}

func receiveOutputRegion() *outputRegion { return nil }

func (r *outputRegion) unmap() {}
