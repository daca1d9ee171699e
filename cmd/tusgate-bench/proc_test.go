package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 56.
	stat := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1203 0 0 0 1234 56 0 0 20 0 9 0 12345 1234567 890 18446744073709551615\n"
	user, sys, err := parseProcStat([]byte(stat))
	if err != nil || user != 1234 || sys != 56 {
		t.Fatalf("parseProcStat = %d, %d, %v; want 1234, 56", user, sys, err)
	}
	for _, bad := range []string{"", "4242 prog S 1", "4242 (p) S 1 2 3", "4242 (p) S 1 2 3 4 5 6 7 8 9 10 x 0", "4242 (p) S 1 2 3 4 5 6 7 8 9 10 0 x"} {
		if _, _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

const statusSample = `Name:	tusgate
Umask:	0022
State:	S (sleeping)
VmPeak:	 1300000 kB
VmSize:	 1290000 kB
VmHWM:	  204800 kB
VmRSS:	  102400 kB
Threads:	9
`

func TestParseProcStatus(t *testing.T) {
	rss, hwm, err := parseProcStatus([]byte(statusSample))
	if err != nil || rss != 100<<20 || hwm != 200<<20 {
		t.Fatalf("parseProcStatus = %d, %d, %v; want 100 MiB, 200 MiB", rss, hwm, err)
	}
	if _, _, err := parseProcStatus([]byte("Name:\tkthreadd\nState:\tS\n")); err == nil {
		t.Error("status without VmRSS parsed")
	}
	if _, _, err := parseProcStatus([]byte("VmRSS:\t12 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("VmRSS in MB parsed")
	}
}

// A fake /proc tree: Sample reads it, ResetPeak writes clear_refs.
func TestProcSourceFakeRoot(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "77")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "77 (tusd) S 1 77 77 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0 1 1 1\n")
	write("status", statusSample)
	write("clear_refs", "")
	src := ProcSource{PID: 77, Root: root}
	s, err := src.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU != 3 || s.Sys != 0.5 || s.RSS != 100<<20 || s.HWM != 200<<20 {
		t.Errorf("Sample = %+v, want 3 s CPU (0.5 s in the kernel), 100 MiB RSS, 200 MiB HWM", s)
	}
	if err := src.ResetPeak(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "clear_refs")); string(b) != "5" {
		t.Errorf("clear_refs = %q, want 5", b)
	}
	if _, err := (ProcSource{PID: 78, Root: root}).Sample(context.Background()); err == nil {
		t.Error("Sample of a missing process succeeded")
	}
}

// The real /proc of this test process: CPU grows with work, and a Monitor
// sees an allocation in the peak.
func TestMonitorSelf(t *testing.T) {
	src := ProcSource{PID: os.Getpid()}
	m, err := StartMonitor(context.Background(), src, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := src.Sample(context.Background())
	buf := make([]byte, 64<<20)
	for i := range buf { // touch every page, and spend CPU
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(2 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1 << 20 {
			x += i * int(buf[i%len(buf)])
		}
		if s, _ := src.Sample(context.Background()); s.CPU-before.CPU >= 0.05 {
			break
		}
	}
	u, err := m.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUSeconds < 0.05 {
		t.Errorf("CPU seconds = %v after busy work (x=%d), want ≥ 0.05", u.CPUSeconds, x)
	}
	if u.PeakRSS < 64<<20 {
		t.Errorf("peak RSS = %d MiB, want ≥ 64 MiB (from %s)", u.PeakRSS>>20, u.PeakFrom)
	}
	buf[0] = 1 // keep buf alive until here
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
go_gc_duration_seconds{quantile="0"} 1e-05
process_resident_memory_bytes 1.2345678e+08
process_cpu_seconds_total_extra 99
`
	v, err := parseMetrics(strings.NewReader(text), "process_cpu_seconds_total", "process_resident_memory_bytes")
	if err != nil {
		t.Fatal(err)
	}
	if v["process_cpu_seconds_total"] != 12.5 || v["process_resident_memory_bytes"] != 123456780 {
		t.Errorf("parseMetrics = %v", v)
	}
	if _, err := parseMetrics(strings.NewReader(text), "process_open_fds"); err == nil {
		t.Error("missing series not reported")
	}
}

func TestMetricsSource(t *testing.T) {
	cpu := 1.0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "process_cpu_seconds_total %s\nprocess_resident_memory_bytes 1048576\n", strconv.FormatFloat(cpu, 'f', -1, 64))
		cpu += 0.5
	}))
	defer srv.Close()
	m, err := StartMonitor(context.Background(), MetricsSource{URL: srv.URL, Client: srv.Client()}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, err := m.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUSeconds != 0.5 || u.SysSeconds >= 0 || u.PeakRSS != 1<<20 || u.PeakFrom != "sampled" {
		t.Errorf("usage = %+v, want 0.5 s (kernel share unknown: negative), 1 MiB, sampled", u)
	}
}

func TestParseMachineCPU(t *testing.T) {
	stat := "cpu  1000 50 300 90000 700 20 30 5 0 0\ncpu0 500 25 150 45000 350 10 15 2 0 0\nintr 1 2 3\n"
	got, err := parseMachineCPU([]byte(stat))
	if err != nil || got != 14.05 { // (1000+50+300+20+30+5) / 100
		t.Fatalf("parseMachineCPU = %v, %v; want 14.05", got, err)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2\n")); err == nil {
		t.Error("no cpu line accepted")
	}
	if machineCPU() <= 0 {
		t.Error("machineCPU() of this machine is not positive")
	}
}
