package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func f64(v float64) *float64 { return &v }

func TestReport(t *testing.T) {
	var lines bytes.Buffer
	enc := json.NewEncoder(&lines)
	add := func(r Result) {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	// Three runs each, interleaved; tusd first so the subject flag matters.
	for i, v := range []float64{100, 120, 110} {
		add(Result{Label: "tusd", Scenario: "1x1GiB c1", Mode: "tus", MBPerS: v * 2, P99ms: 1000, CPUPerGiB: f64(2), PeakRSSMiB: f64(100), Errors: 0})
		add(Result{Label: "tusgate", Scenario: "1x1GiB c1", Mode: "tus", MBPerS: v, P99ms: 2000, CPUPerGiB: f64(3 + float64(i)), PeakRSSMiB: f64(50)})
		add(Result{Label: "s3-direct", Scenario: "1x1GiB c1", Mode: "s3-direct", MBPerS: 400, P99ms: 500, Errors: i})
	}
	add(Result{Label: "tusgate", Scenario: "500x64KiB", Mode: "tus", Uploads: 500, Errors: 100, MBPerS: 5, ServerCPU: f64(2), CPUPerGiB: f64(80), SysPerGiB: f64(50), PeakRSSMiB: f64(30), MachineCPU: 10, OtherCPU: 2})
	add(Result{Label: "tusgate", Scenario: "HEAD, 2000 parts of 5MiB", Mode: "head", P50ms: 20, P99ms: 40, RequestsPerS: 50, ServerCPU: f64(1), ServerCPUms: 2, PeakRSSMiB: f64(60)})
	add(Result{Label: "tusd", Scenario: "HEAD, 2000 parts of 5MiB", Mode: "head", P50ms: 10, P99ms: 20, RequestsPerS: 100, ServerCPU: f64(1), ServerCPUms: 1, PeakRSSMiB: f64(60)})
	path := filepath.Join(t.TempDir(), "r.jsonl")
	if err := os.WriteFile(path, lines.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := reportMain([]string{"--subject", "tusgate", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got := out.String()
	for _, want := range []string{
		"| 1x1GiB c1 | tusgate | 3 | 110.0 (100.0–120.0) |",
		"| 1x1GiB c1 | tusd | 3 | 220.0 (200.0–240.0) |",
		"| 1x1GiB c1 | s3-direct | 3 | 400.0 (400.0–400.0) |",
		// Per round: CPU 3/2, 4/2, 5/2; MB/s 100/200, 120/240, 110/220.
		"| 1x1GiB c1 | tusgate/tusd | 0.50× (0.50–0.50) | 2.00× (2.00–2.00) | 2.00× (1.50–2.50) | 0.50× (0.50–0.50) |",
		"| 1x1GiB c1 | tusgate/s3-direct | 0.28× (0.25–0.30) | – | – | – |",
		"| 500x64KiB | tusgate | 1 | 5.0 (5.0–5.0) | 0.00 | 0.000 | 0.000 | 80.0 | 50.0 | 5.00 | 30.0 | – | 2.00 | 100 |",
		"| HEAD, 2000 parts of 5MiB | tusgate | 1 | 20.0 | 40.0 | 50.0 | 2.00 | 0 |",
		"| HEAD, 2000 parts of 5MiB | tusgate/tusd | – | 2.00× | – | 1.00× |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	// Failed uploads are summed over the runs: 0 + 1 + 2.
	if !strings.Contains(got, "| – | – | – | 0.00 | 3 |\n") {
		t.Errorf("s3-direct row does not sum the failures:\n%s", got)
	}
	if !strings.Contains(got, "Disturbed runs (other processes and the kernel used over 10 % of the machine's busy CPU): 500x64KiB / tusgate: 1 of 1.\n") {
		t.Errorf("disturbed run not reported:\n%s", got)
	}
	// tusgate's rows come before tusd's although tusd was read first.
	if strings.Index(got, "| tusgate |") > strings.Index(got, "| tusd |") {
		t.Errorf("subject not first:\n%s", got)
	}

	if code := reportMain([]string{filepath.Join(t.TempDir(), "missing")}, &out, &errb); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}
	if _, err := readResults(strings.NewReader("{not json\n")); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestSummaryShowsKernelShares(t *testing.T) {
	r := Result{Label: "tusgate", Uploads: 1, Bytes: 1 << 30, Seconds: 2, MBPerS: 536.9, ServerCPU: f64(1.2), CPUPerGiB: f64(1.2),
		ServerSys: f64(0.6), PeakRSSMiB: f64(70), PeakRSSFrom: "VmHWM", ClientCPU: 0.3, ClientSys: 0.2}
	got := summary(&r)
	for _, want := range []string{"server CPU 1.20 s (0.60 s in the kernel) = 1.20 s/GiB, peak RSS 70 MiB", "client CPU 0.30 s (0.20 s in the kernel)"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q: %s", want, got)
		}
	}
	r.ServerSys = nil // --metrics cannot tell
	if got := summary(&r); strings.Contains(got, "s in the kernel) =") {
		t.Errorf("summary shows a kernel share it does not know: %s", got)
	}
}
