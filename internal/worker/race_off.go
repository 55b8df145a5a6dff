//go:build !race

package worker

// raceOverhead scales a worker's memory budgets when it is built with the
// race detector; without it, budgets are what they say.
const raceOverhead = 1
