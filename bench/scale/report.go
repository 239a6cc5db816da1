package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// metric reads one figure of a run.
type metric struct {
	Name string
	Unit string
	Get  func(u usage) float64
}

var metrics = []metric{
	{"controller CPU", "s", func(u usage) float64 { return u.CPU.Seconds() }},
	{"peak memory", "MiB", func(u usage) float64 { return mib(u.PeakRSS) }},
	{"uplink", "MiB", func(u usage) float64 { return mib(u.Uplink) }},
}

func median(p point, get func(usage) float64) float64 {
	v := make([]float64, len(p.Runs))
	for i, u := range p.Runs {
		v[i] = get(u)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// fit is the least-squares line y = a + b·N through the medians.
func fit(mt *method, get func(usage) float64) (a, b float64) {
	n := float64(len(mt.Points))
	var sx, sy, sxx, sxy float64
	for _, p := range mt.Points {
		x, y := float64(p.N), median(p, get)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if d := n*sxx - sx*sx; d != 0 {
		b = (n*sxy - sx*sy) / d
	}
	return (sy - b*sx) / n, b
}

func report(c config, methods []*method, started time.Time) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	host, _ := os.Hostname()
	w("# Scale: what cvs costs the controller per host\n\n")
	w("Written by bench/scale (`make bench-scale`) on %s UTC in %s on %s, invoked as `%s`.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), time.Since(started).Round(time.Second), host, strings.Join(os.Args, " "))
	w("Every figure is this machine's (the controller's) cost for one cvs command: **controller CPU** is user+sys of cvs and of every process it reaped (srun, sbcast; salloc's under Slurm); **peak memory** is the largest sum of the resident memory of cvs and all its descendants at one moment, sampled every 20 ms; **uplink** is the bytes this machine sent to the hosts' addresses (IP packets, counted by an iptables rule on OUTPUT; the lab's gateway, where its registry runs, is not counted). ")
	w("Medians of %d runs after one warm-up. The pushed image is the lab's workload image plus one layer of %d MiB of random bytes; before every push every image is removed from every host, so each push sends the whole image. ", c.Runs, c.SizeMiB)
	w("The hosts share this machine's 2 cores with cvs, so wall times are shown but are not the point.\n\n")
	for _, mt := range methods {
		w("## %s\n\n%s. Command (at the largest N): `%s`\n\n", mt.Name, mt.Where, mt.Command)
		w("| N | wall s | controller CPU s | peak memory MiB | uplink MiB | uplink per host MiB |\n|---|---|---|---|---|---|\n")
		for _, p := range mt.Points {
			up := median(p, metrics[2].Get)
			w("| %d | %.2f | %.2f | %.1f | %.2f | %.3f |\n", p.N, median(p, func(u usage) float64 { return u.Wall.Seconds() }),
				median(p, metrics[0].Get), median(p, metrics[1].Get), up, up/float64(p.N))
		}
		w("\n")
	}
	w("## Per host, and extrapolated\n\n")
	w("A line `fixed + per host × N` fitted (least squares) through the medians above; the extrapolation assumes the per-host cost stays what it was at the measured N. Where the medians do not grow with N (the fitted slope is zero or below), the row says so and the largest median stands for every N.\n\n")
	w("| method | measured N | figure | fixed | per host |")
	for _, n := range c.At {
		w(" at %d hosts |", n)
	}
	w("\n|---|---|---|---|---|")
	for range c.At {
		w("---|")
	}
	w("\n")
	for _, mt := range methods {
		var ns []string
		for _, p := range mt.Points {
			ns = append(ns, fmt.Sprint(p.N))
		}
		for _, m := range metrics {
			a, b := fit(mt, m.Get)
			per := num(b) + " " + m.Unit
			if b <= 0 {
				// Flat within the noise: no per-host cost measured; the
				// largest median stands for every N.
				a, b, per = 0, 0, "none measured (flat)"
				for _, p := range mt.Points {
					a = max(a, median(p, m.Get))
				}
			}
			w("| %s | %s | %s | %s %s | %s |", mt.Name, strings.Join(ns, ", "), m.Name, num(a), m.Unit, per)
			for _, n := range c.At {
				w(" %s %s |", num(a+b*float64(n)), m.Unit)
			}
			w("\n")
		}
	}
	w("\n")
	return b.String()
}

func num(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.4f", v)
	}
}
