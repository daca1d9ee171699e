package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)
// would need cgo).
const clockTicks = 100

// ResourceSample is one reading of a process's resource use.
type ResourceSample struct {
	CPU float64 // user + system CPU seconds since the process started
	Sys float64 // of CPU, the system (kernel) seconds; negative if the source cannot tell
	RSS int64   // resident set size now, bytes
	HWM int64   // peak resident set size since start or the last reset, bytes; 0 if unknown
}

// ResourceSource reads a process's resource use.
type ResourceSource interface {
	// Sample reads the current values.
	Sample(ctx context.Context) (ResourceSample, error)
	// ResetPeak makes HWM start again from the current RSS, so that it
	// covers one run only.
	ResetPeak() error
	// Describe names the source for messages.
	Describe() string
}

// ProcSource reads /proc/PID of a local process.
type ProcSource struct {
	PID  int
	Root string // "/proc"; a test directory in tests
}

// Describe implements ResourceSource.
func (p ProcSource) Describe() string { return fmt.Sprintf("pid %d", p.PID) }

func (p ProcSource) path(name string) string {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	return filepath.Join(root, strconv.Itoa(p.PID), name)
}

// Sample implements ResourceSource from /proc/PID/stat and /proc/PID/status.
func (p ProcSource) Sample(context.Context) (ResourceSample, error) {
	stat, err := os.ReadFile(p.path("stat"))
	if err != nil {
		return ResourceSample{}, err
	}
	user, sys, err := parseProcStat(stat)
	if err != nil {
		return ResourceSample{}, fmt.Errorf("%s: %w", p.path("stat"), err)
	}
	status, err := os.ReadFile(p.path("status"))
	if err != nil {
		return ResourceSample{}, err
	}
	rss, hwm, err := parseProcStatus(status)
	if err != nil {
		return ResourceSample{}, fmt.Errorf("%s: %w", p.path("status"), err)
	}
	return ResourceSample{CPU: float64(user+sys) / clockTicks, Sys: float64(sys) / clockTicks, RSS: rss, HWM: hwm}, nil
}

// ResetPeak implements ResourceSource: writing 5 to /proc/PID/clear_refs
// resets VmHWM to the current RSS (Linux 4.0+; needs the right to ptrace
// the process, i.e. the same user or root).
func (p ProcSource) ResetPeak() error {
	return os.WriteFile(p.path("clear_refs"), []byte("5"), 0)
}

// parseProcStat returns utime and stime, in clock ticks, from the contents
// of /proc/PID/stat. The command name (field 2) is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(data []byte) (user, sys uint64, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name in stat")
	}
	// After the name: state(3) ppid(4) … utime(14) stime(15).
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat has %d fields after the command name, want at least 13", len(f))
	}
	if user, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if sys, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return user, sys, nil
}

// parseProcStatus returns VmRSS and VmHWM, in bytes, from the contents of
// /proc/PID/status.
func parseProcStatus(data []byte) (rss, hwm int64, err error) {
	var haveRSS, haveHWM bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("unexpected %s line %q", name, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		if name == "VmRSS" {
			rss, haveRSS = kb*1024, true
		} else {
			hwm, haveHWM = kb*1024, true
		}
	}
	if !haveRSS || !haveHWM {
		return 0, 0, errors.New("no VmRSS or VmHWM (a kernel thread or a zombie?)")
	}
	return rss, hwm, nil
}

// MetricsSource reads process_cpu_seconds_total and
// process_resident_memory_bytes from a Prometheus text endpoint.
type MetricsSource struct {
	URL    string
	Client *http.Client
}

// Describe implements ResourceSource.
func (m MetricsSource) Describe() string { return m.URL }

// Sample implements ResourceSource. HWM stays 0: Prometheus's process
// collector exports no peak, so the Monitor samples RSS during the run.
func (m MetricsSource) Sample(ctx context.Context) (ResourceSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return ResourceSample{}, err
	}
	resp, err := m.Client.Do(req)
	if err != nil {
		return ResourceSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ResourceSample{}, fmt.Errorf("GET %s: %s", m.URL, resp.Status)
	}
	v, err := parseMetrics(resp.Body, "process_cpu_seconds_total", "process_resident_memory_bytes")
	if err != nil {
		return ResourceSample{}, fmt.Errorf("%s: %w", m.URL, err)
	}
	return ResourceSample{CPU: v["process_cpu_seconds_total"], Sys: -1, RSS: int64(v["process_resident_memory_bytes"])}, nil
}

// ResetPeak implements ResourceSource; a metrics endpoint has no peak.
func (MetricsSource) ResetPeak() error { return errors.ErrUnsupported }

// parseMetrics returns the values of the given label-less series from a
// Prometheus text exposition; it fails if one of them is missing.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f[0], err)
		}
		out[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("no %s series", n)
		}
	}
	return out, nil
}

// Monitor measures one process over one run: CPU seconds used between
// Start and Stop, and the peak RSS in between.
type Monitor struct {
	src       ResourceSource
	before    ResourceSample
	peakReset bool // HWM was reset at the start, so it covers the run only

	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  int64 // largest RSS sampled
}

// StartMonitor resets the source's peak if it can, takes the first sample
// and samples RSS every interval until Stop.
func StartMonitor(ctx context.Context, src ResourceSource, interval time.Duration) (*Monitor, error) {
	m := &Monitor{src: src, stop: make(chan struct{}), done: make(chan struct{})}
	m.peakReset = src.ResetPeak() == nil
	s, err := src.Sample(ctx)
	if err != nil {
		return nil, fmt.Errorf("sampling %s: %w", src.Describe(), err)
	}
	m.before, m.max = s, s.RSS
	go m.poll(ctx, interval)
	return m, nil
}

func (m *Monitor) poll(ctx context.Context, interval time.Duration) {
	defer close(m.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if s, err := m.src.Sample(ctx); err == nil {
			m.mu.Lock()
			m.max = max(m.max, s.RSS)
			m.mu.Unlock()
		}
	}
}

// Usage is what a Monitor measured.
type Usage struct {
	CPUSeconds float64
	SysSeconds float64 // of CPUSeconds, those in the kernel; negative if unknown
	PeakRSS    int64   // bytes
	PeakFrom   string  // "VmHWM" (exact) or "sampled" (largest RSS seen by polling)
}

// Stop takes the last sample and returns the usage over the run.
func (m *Monitor) Stop(ctx context.Context) (Usage, error) {
	close(m.stop)
	<-m.done
	s, err := m.src.Sample(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("sampling %s: %w", m.src.Describe(), err)
	}
	u := Usage{CPUSeconds: s.CPU - m.before.CPU, SysSeconds: -1, PeakRSS: max(m.max, s.RSS), PeakFrom: "sampled"}
	if s.Sys >= 0 && m.before.Sys >= 0 {
		u.SysSeconds = s.Sys - m.before.Sys
	}
	if m.peakReset && s.HWM > 0 {
		u.PeakRSS, u.PeakFrom = max(u.PeakRSS, s.HWM), "VmHWM"
	}
	return u, nil
}

// selfCPU returns the CPU seconds this process has used (user + system),
// and of those the system (kernel) seconds.
func selfCPU() (cpu, sys float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), tv(ru.Stime)
}

// parseMachineCPU returns the busy CPU seconds of all CPUs together (user,
// nice, system, irq, softirq and steal; not idle or iowait) from the
// contents of /proc/stat.
func parseMachineCPU(data []byte) (float64, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("no cpu line in /proc/stat")
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat field %d: %w", i, err)
		}
		busy += v
	}
	return float64(busy) / clockTicks, nil
}

// machineCPU returns the machine's busy CPU seconds so far, or -1 if
// /proc/stat cannot be read.
func machineCPU() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	v, err := parseMachineCPU(data)
	if err != nil {
		return -1
	}
	return v
}
