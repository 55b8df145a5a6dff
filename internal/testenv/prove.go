package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// ProveVar names a file to which the attack and fault tests append what
// they measured (Prove), for docs/RELIABILITY.md (`make prove`). Unset,
// Prove does nothing.
const ProveVar = "WASMWIZ_PROVE_OUT"

// Proof is one line of the prove file: an attack or fault, what held
// (what the test asserts), and the figures the test measured on the way.
type Proof struct {
	Row     string            `json:"row"`  // the attack or fault, e.g. "compile bomb"
	Held    string            `json:"held"` // what held, as the test asserts it
	Test    string            `json:"test"` // the test that measured it
	Figures map[string]string `json:"figures"`
}

var proveMu sync.Mutex

// Prove appends one Proof to the file named by WASMWIZ_PROVE_OUT. The
// test's assertions are the proof; the figures are what it measured
// (durations, bytes, counts) and are never asserted. Figures is a list of
// name, value pairs; values are formatted by Figure.
func Prove(t testing.TB, row, held string, figures ...string) {
	t.Helper()
	out := os.Getenv(ProveVar)
	if out == "" {
		return
	}
	p := Proof{Row: row, Held: held, Test: t.Name(), Figures: map[string]string{}}
	for i := 0; i+1 < len(figures); i += 2 {
		p.Figures[figures[i]] = figures[i+1]
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	proveMu.Lock()
	defer proveMu.Unlock()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", ProveVar, err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Fatalf("%s: %v", ProveVar, err)
	}
}

// Proving reports whether WASMWIZ_PROVE_OUT is set: a test may measure
// more (a longer baseline, say) only then.
func Proving() bool { return os.Getenv(ProveVar) != "" }

// Ms formats a duration in milliseconds for a figure.
func Ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

// MiB formats bytes in MiB for a figure.
func MiB(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// Latencies collects durations (of one kind of request) from goroutines.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Since records the time since start.
func (l *Latencies) Since(start time.Time) { l.Add(time.Since(start)) }

// String is "median M, max X (n N)", or "none".
func (l *Latencies) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return "none"
	}
	d := append([]time.Duration(nil), l.d...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return fmt.Sprintf("median %s, max %s (n %d)", Ms(d[len(d)/2]), Ms(d[len(d)-1]), len(d))
}

// Max is the longest duration recorded (0 for none).
func (l *Latencies) Max() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m time.Duration
	for _, d := range l.d {
		m = max(m, d)
	}
	return m
}

// PeakRSS samples the resident memory of this process and every process
// descended from it (the worker processes) until the returned stop is
// called, which returns the largest sum seen, in bytes. Outside Linux, or
// when WASMWIZ_PROVE_OUT is unset, it samples nothing and stop returns 0:
// the figure is for the prove report only.
func PeakRSS(t testing.TB) (stop func() int64) {
	return PeakRSSOf(t, os.Getpid())
}

// PeakRSSOf is PeakRSS of the process pid and its descendants (a server
// the test started as a child process, with its workers).
func PeakRSSOf(t testing.TB, pid int) (stop func() int64) {
	if !Proving() {
		return func() int64 { return 0 }
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return func() int64 { return 0 }
	}
	return PeakOf(t, 50*time.Millisecond, func() int64 { return treeRSS(pid) })
}

// PeakOf samples measure every interval, in a goroutine of its own, until
// the returned stop is called or the test ends; stop returns the largest
// sample.
func PeakOf(t testing.TB, interval time.Duration, measure func() int64) (stop func() int64) {
	done := make(chan struct{})
	result := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			peak = max(peak, measure())
			select {
			case <-done:
				result <- peak
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	var peak int64
	stop = func() int64 {
		once.Do(func() {
			close(done)
			peak = <-result
		})
		return peak
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TreeCPU is the processor time (user and system) that pid and its live
// descendants have used so far, from /proc; 0 outside Linux. Descendants
// that ended are not counted: take it around a phase in which they live.
func TreeCPU(pid int) time.Duration {
	var secs float64
	for _, st := range treeStats(pid) {
		secs += st.CPUTime()
	}
	return time.Duration(secs * float64(time.Second))
}

// treeRSS is the resident memory of pid and its descendants, from /proc.
func treeRSS(pid int) int64 {
	var sum int64
	for _, st := range treeStats(pid) {
		sum += RSS(st.PID)
	}
	return sum
}

// treeStats returns the stat lines of pid and its live descendants.
func treeStats(pid int) []procfs.ProcStat {
	procs, _ := procfs.AllProcs()
	stats := map[int]procfs.ProcStat{}
	children := map[int][]int{}
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue // gone meanwhile
		}
		stats[st.PID] = st
		children[st.PPID] = append(children[st.PPID], st.PID)
	}
	var all []procfs.ProcStat
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = append(queue[1:], children[p]...)
		if st, ok := stats[p]; ok {
			all = append(all, st)
		}
	}
	return all
}

// RSS is one process's resident memory (VmRSS), 0 when it is gone.
func RSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
