//go:build race

package worker

// raceOverhead scales a worker's memory budgets when it is built with the
// race detector, whose shadow memory multiplies what every allocation maps
// (2.5-4.5 times measured): the tests run race-built workers.
const raceOverhead = 5
