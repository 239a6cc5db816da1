package transport

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// srunMessages cuts one stream of a task as slurmstepd does with buffered
// output (srun's default): a message is as many whole lines as fit in
// srunMsgMax bytes, or the first srunMsgMax bytes of a longer line; at
// the end of the stream, what is left, in pieces of at most srunMsgMax.
func srunMessages(data []byte) [][]byte {
	var msgs [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		n := 0
		switch {
		case i < 0 || i+1 >= srunMsgMax:
			n = min(len(data), srunMsgMax)
		default:
			for n < len(data) {
				j := bytes.IndexByte(data[n:], '\n')
				if j < 0 || n+j+1 > srunMsgMax {
					break
				}
				n += j + 1
			}
		}
		msgs = append(msgs, data[:n])
		data = data[n:]
	}
	return msgs
}

// srunLabel is how srun --label prints a task's message: each line after
// the task's rank, and a newline after a last line that had none.
func srunLabel(rank int, msg []byte) []byte {
	var b bytes.Buffer
	for len(msg) > 0 {
		fmt.Fprintf(&b, "%d: ", rank)
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			b.Write(msg)
			b.WriteByte('\n')
			break
		}
		b.Write(msg[:i+1])
		msg = msg[i+1:]
	}
	return b.Bytes()
}

// srunOutput is what srun --label prints on one of its streams for tasks
// whose streams are given, their messages interleaved at random.
func srunOutput(r *rand.Rand, streams [][]byte) []byte {
	queues := make([][][]byte, len(streams))
	for i, s := range streams {
		queues[i] = srunMessages(s)
	}
	var out bytes.Buffer
	for {
		var left []int
		for i, q := range queues {
			if len(q) > 0 {
				left = append(left, i)
			}
		}
		if len(left) == 0 {
			return out.Bytes()
		}
		i := left[r.Intn(len(left))]
		out.Write(srunLabel(i, queues[i][0]))
		queues[i] = queues[i][1:]
	}
}

// FuzzSrunDemux feeds the demultiplexer what srun prints for two tasks
// running the batch script, cut in messages and interleaved as srun may,
// and checks that each node gets its command's output and exit status
// exactly.
func FuzzSrunDemux(f *testing.F) {
	f.Add([]byte("out\nno newline"), []byte("err\n"), []byte(""), []byte("\n"), uint16(1000), uint8(3), int64(1))
	f.Add([]byte("\n"), []byte(""), []byte("\n\n"), []byte("a\r\nb\r"), uint16(1023), uint8(0), int64(2))
	f.Add([]byte("z"), []byte("e"), []byte("0: 1: \n"), []byte("@@cvs- exit n1 0\n"), uint16(2048), uint8(255), int64(3))
	f.Add([]byte(""), []byte("\n"), []byte("x\n"), []byte("y"), uint16(1030), uint8(1), int64(4))
	f.Fuzz(fuzzCheck)
}

// fuzzCheck is FuzzSrunDemux's check: long x's come before out1 (so that
// the fuzzer reaches srun's cuts with small inputs).
func fuzzCheck(t *testing.T, out1, err1, out2, err2 []byte, long uint16, status uint8, seed int64) {
	out1 = append(bytes.Repeat([]byte("x"), int(long)%3000), out1...)
	r := rand.New(rand.NewSource(seed))
	token := batchToken()
	nodes := []string{"n1", "n2"}
	outs, errs := [][]byte{out1, out2}, [][]byte{err1, err2}
	members := make([]*srunMember, len(nodes))
	for i, n := range nodes {
		members[i] = &srunMember{node: &Srun{Host: n}, ctx: context.Background(), done: make(chan srunOutcome, 1)}
	}
	d, _ := newSrunDemux(token, members, time.Now())
	// Rank i runs on nodes[1-i]: ranks follow Slurm's node order.
	var stdout, stderr [][]byte
	for rank := range nodes {
		i := 1 - rank
		code := int(status) * i
		stdout = append(stdout, fmt.Appendf(nil, "%s start %s\n%s\n%s exit %s %d\n", token, nodes[i], outs[i], token, nodes[i], code))
		stderr = append(stderr, fmt.Appendf(nil, "%s\n%s exit %s %d\n", errs[i], token, nodes[i], code))
	}
	o, e := srunOutput(r, stdout), srunOutput(r, stderr)
	if seed%2 == 0 {
		d.stderr(bytes.NewReader(e)) // stderr first: its lines wait for their rank
		d.stdout(bytes.NewReader(o))
	} else {
		d.stdout(bytes.NewReader(o))
		d.stderr(bytes.NewReader(e))
	}
	for i, m := range members {
		var got srunOutcome
		select {
		case got = <-m.done:
		default:
			t.Fatalf("%s: no outcome from\n%q\n%q", nodes[i], o, e)
		}
		code := int(status) * i
		if got.res.ExitCode != code || !bytes.Equal(got.res.Stdout, outs[i]) || !bytes.Equal(got.res.Stderr, errs[i]) {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q; want %d, %q, %q", nodes[i], got.res.ExitCode, got.res.Stdout, got.res.Stderr, code, outs[i], errs[i])
		}
		if (got.err == nil) != (code == 0) {
			t.Fatalf("%s: exit %d, err %v", nodes[i], code, got.err)
		}
	}
}
