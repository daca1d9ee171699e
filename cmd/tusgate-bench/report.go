package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// reportMain implements "tusgate-bench report [--subject LABEL] FILE…":
// it reads results (the JSON objects --json prints, one per line; "-" or
// no file reads standard input) and prints Markdown tables with the median
// of each target's runs per scenario and the subject's ratios to the other
// targets.
func reportMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tusgate-bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	subject := fs.String("subject", "", "target whose ratios to the others are shown (default: the first label read)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	var all []Result
	for _, name := range files {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(stderr, "tusgate-bench report:", err)
				return 2
			}
			defer f.Close()
			r = f
		}
		res, err := readResults(r)
		if err != nil {
			fmt.Fprintf(stderr, "tusgate-bench report: %s: %v\n", name, err)
			return 2
		}
		all = append(all, res...)
	}
	fmt.Fprint(stdout, renderReport(all, *subject))
	return 0
}

// readResults reads one JSON result per line; blank lines are skipped.
func readResults(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// group is the runs of one target in one scenario.
type group struct {
	scenario, label string
	runs            []Result
}

// pick returns the median of f over the runs that have a value ("ok"
// false when none has).
func (g *group) pick(f func(r *Result) (float64, bool)) (float64, bool) {
	var v []float64
	for i := range g.runs {
		if x, ok := f(&g.runs[i]); ok {
			v = append(v, x)
		}
	}
	return Median(v), len(v) > 0
}

func (g *group) spread(f func(r *Result) float64) (lo, hi float64) {
	lo, hi = f(&g.runs[0]), f(&g.runs[0])
	for i := range g.runs {
		lo, hi = min(lo, f(&g.runs[i])), max(hi, f(&g.runs[i]))
	}
	return lo, hi
}

// disturbedShare is the share of the machine's busy CPU time that, used by
// none of the measured processes, marks a run as disturbed.
const disturbedShare = 0.1

// disturbed counts the runs in which other processes (or the kernel) used
// more than disturbedShare of the machine's busy CPU time.
func (g *group) disturbed() int {
	n := 0
	for _, r := range g.runs {
		if r.MachineCPU > 0 && r.OtherCPU > disturbedShare*r.MachineCPU {
			n++
		}
	}
	return n
}

func (g *group) errors() int {
	n := 0
	for _, r := range g.runs {
		n += r.Errors
	}
	return n
}

func always(f func(r *Result) float64) func(r *Result) (float64, bool) {
	return func(r *Result) (float64, bool) { return f(r), true }
}

func optional(f func(r *Result) *float64) func(r *Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if p := f(r); p != nil {
			return *p, true
		}
		return 0, false
	}
}

var (
	mbps      = always(func(r *Result) float64 { return r.MBPerS })
	uploadsPS = always(func(r *Result) float64 { return r.UploadsPerS })
	p50       = always(func(r *Result) float64 { return r.P50ms })
	p99       = always(func(r *Result) float64 { return r.P99ms })
	cpuPerGiB = optional(func(r *Result) *float64 { return r.CPUPerGiB })
	sysPerGiB = optional(func(r *Result) *float64 { return r.SysPerGiB })
	cpuPerUp  = func(r *Result) (float64, bool) {
		if r.ServerCPU == nil || r.Uploads == r.Errors {
			return 0, false
		}
		return *r.ServerCPU * 1000 / float64(r.Uploads-r.Errors), true
	}
	peakRSS    = optional(func(r *Result) *float64 { return r.PeakRSSMiB })
	s3PerGiB   = optional(func(r *Result) *float64 { return r.S3CPUPerGiB })
	otherCPU   = always(func(r *Result) float64 { return r.OtherCPU })
	headsPS    = always(func(r *Result) float64 { return r.RequestsPerS })
	cpuPerHead = func(r *Result) (float64, bool) { return r.ServerCPUms, r.ServerCPU != nil }
)

// renderReport formats results as Markdown: a table of medians for upload
// scenarios, one for HEAD scenarios, and the subject's ratios.
func renderReport(results []Result, subject string) string {
	var scenarios, labels []string
	groups := map[[2]string]*group{}
	for _, r := range results {
		if !slices.Contains(scenarios, r.Scenario) {
			scenarios = append(scenarios, r.Scenario)
		}
		if !slices.Contains(labels, r.Label) {
			labels = append(labels, r.Label)
		}
		k := [2]string{r.Scenario, r.Label}
		if groups[k] == nil {
			groups[k] = &group{scenario: r.Scenario, label: r.Label}
		}
		groups[k].runs = append(groups[k].runs, r)
	}
	if len(results) == 0 {
		return "(no results)\n"
	}
	if subject == "" {
		subject = labels[0]
	}
	if i := slices.Index(labels, subject); i > 0 {
		labels = append([]string{subject}, slices.Delete(labels, i, i+1)...)
	}
	var uploads, heads []*group
	for _, s := range scenarios {
		for _, l := range labels {
			if g := groups[[2]string{s, l}]; g != nil {
				if g.runs[0].Mode == "head" {
					heads = append(heads, g)
				} else {
					uploads = append(uploads, g)
				}
			}
		}
	}

	var b strings.Builder
	if len(uploads) > 0 {
		b.WriteString("| scenario | target | runs | MB/s (min–max) | uploads/s | p50 ms | p99 ms | server CPU s/GiB | of which kernel s/GiB | server CPU ms/upload | server peak RSS MiB | S3 server CPU s/GiB | other CPU s | failed uploads |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, g := range uploads {
			m, _ := g.pick(mbps)
			lo, hi := g.spread(func(r *Result) float64 { return r.MBPerS })
			fmt.Fprintf(&b, "| %s | %s | %d | %.1f (%.1f–%.1f) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n",
				g.scenario, g.label, len(g.runs), m, lo, hi, num(g.pick(uploadsPS)), ms(g.pick(p50)), ms(g.pick(p99)),
				num(g.pick(cpuPerGiB)), num(g.pick(sysPerGiB)), num(g.pick(cpuPerUp)), num(g.pick(peakRSS)), num(g.pick(s3PerGiB)), num(g.pick(otherCPU)), g.errors())
		}
	}
	if len(heads) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString("| scenario | target | runs | HEAD p50 ms | HEAD p99 ms | HEADs/s | server CPU ms/HEAD | failed HEADs |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, g := range heads {
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %d |\n",
				g.scenario, g.label, len(g.runs), ms(g.pick(p50)), ms(g.pick(p99)), num(g.pick(headsPS)), ms(g.pick(cpuPerHead)), g.errors())
		}
	}

	// Ratios: subject / other, per scenario.
	var rows []string
	for _, s := range scenarios {
		sg := groups[[2]string{s, subject}]
		if sg == nil {
			continue
		}
		for _, l := range labels[1:] {
			og := groups[[2]string{s, l}]
			if og == nil {
				continue
			}
			if sg.runs[0].Mode == "head" {
				rows = append(rows, fmt.Sprintf("| %s | %s/%s | – | %s | – | %s |", s, subject, l, ratio(sg, og, p99), ratio(sg, og, peakRSS)))
				continue
			}
			// Latencies of different kinds of requests (a whole PATCH, an
			// UploadPart) are not compared.
			lat := "–"
			if sg.runs[0].Mode == og.runs[0].Mode {
				lat = ratio(sg, og, p99)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s/%s | %s | %s | %s | %s |", s, subject, l,
				ratio(sg, og, mbps), lat, ratio(sg, og, cpuPerGiB), ratio(sg, og, peakRSS)))
		}
	}
	var disturbed []string
	for _, s := range scenarios {
		for _, l := range labels {
			if g := groups[[2]string{s, l}]; g != nil {
				if n := g.disturbed(); n > 0 {
					disturbed = append(disturbed, fmt.Sprintf("%s / %s: %d of %d", s, l, n, len(g.runs)))
				}
			}
		}
	}
	if len(rows) > 0 {
		b.WriteString("\nRatios of medians, with the range of the rounds' own ratios (MB/s: higher is better for the first; the others: lower is better):\n\n")
		b.WriteString("| scenario | ratio | MB/s | p99 | server CPU/GiB | server peak RSS |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: |\n")
		for _, r := range rows {
			b.WriteString(r + "\n")
		}
	}
	if len(disturbed) > 0 {
		fmt.Fprintf(&b, "\nDisturbed runs (other processes and the kernel used over %.0f %% of the machine's busy CPU): %s.\n",
			disturbedShare*100, strings.Join(disturbed, "; "))
	}
	return b.String()
}

// ratio formats median(a)/median(b) of f, or "–" when one is missing or b
// is 0. With several rounds it adds the range of the rounds' own ratios
// (run i of a against run i of b, which ran in the same round): on a shared
// machine they show how far one round's comparison can stray.
func ratio(a, b *group, f func(r *Result) (float64, bool)) string {
	x, okA := a.pick(f)
	y, okB := b.pick(f)
	if !okA || !okB || y == 0 {
		return "–"
	}
	out := fmt.Sprintf("%.2f×", x/y)
	if len(a.runs) < 2 || len(a.runs) != len(b.runs) {
		return out
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range a.runs {
		u, okU := f(&a.runs[i])
		v, okV := f(&b.runs[i])
		if !okU || !okV || v == 0 {
			return out
		}
		lo, hi = min(lo, u/v), max(hi, u/v)
	}
	return out + fmt.Sprintf(" (%.2f–%.2f)", lo, hi)
}

func num(v float64, ok bool) string {
	switch {
	case !ok:
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ms(v float64, ok bool) string {
	if ok && v < 1 {
		return fmt.Sprintf("%.3f", v)
	}
	return num(v, ok)
}
