package queue

import "github.com/riverqueue/river"

// OptionsOf returns q's options, defaults applied.
func OptionsOf(q *Queue) Options { return q.opts }

// RiverConfigOf returns the configuration q gives River.
func RiverConfigOf(q *Queue) *river.Config { return q.config() }
