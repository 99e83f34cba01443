// loadgen: a small HTTPS load client for the join benchmarks. It POSTs one
// body per line of -bodies to -url, at most -concurrency in flight, over a
// fresh TLS connection per request (no keep-alive), as joining nodes do, and
// prints one JSON line: {"ok":N,"errors":E,"seconds":S,"p50":ms,"p99":ms,
// "cpuSeconds":C,"firstError":"..."}, C being its own user+system CPU time.
// It is Go so that the client costs the shared 2-core machine far less CPU
// than the server it measures; the Node client in scripts/lib/load.ts spends
// about as much per handshake as the server.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "", "https URL to POST to")
	caFile := flag.String("cacert", "", "PEM root to verify the server with")
	serverName := flag.String("servername", "", "name to verify the server certificate against")
	bodiesFile := flag.String("bodies", "", "file with one request body per line")
	concurrency := flag.Int("concurrency", 64, "requests in flight")
	flag.Parse()

	rootPem, err := os.ReadFile(*caFile)
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPem) {
		fail(fmt.Errorf("no certificate in %s", *caFile))
	}
	bodies := readLines(*bodiesFile)

	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: *serverName, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}

	latencies := make([]float64, len(bodies))
	var next, errors int64
	var firstError atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1) - 1
				if i >= int64(len(bodies)) {
					return
				}
				t0 := time.Now()
				status, text, err := post(client, *url, bodies[i])
				latencies[i] = float64(time.Since(t0).Microseconds()) / 1000
				if err != nil || status != 200 {
					atomic.AddInt64(&errors, 1)
					if err != nil {
						firstError.CompareAndSwap(nil, err.Error())
					} else {
						firstError.CompareAndSwap(nil, fmt.Sprintf("HTTP %d: %.200s", status, text))
					}
				}
			}
		}()
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()
	sort.Float64s(latencies)
	pick := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		k := int(p / 100 * float64(len(latencies)))
		if k >= len(latencies) {
			k = len(latencies) - 1
		}
		return latencies[k]
	}
	first, _ := firstError.Load().(string)
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
	out, _ := json.Marshal(map[string]any{
		"ok": int64(len(bodies)) - errors, "errors": errors, "seconds": seconds,
		"p50": pick(50), "p99": pick(99), "cpuSeconds": cpu, "firstError": first,
	})
	fmt.Println(string(out))
}

func post(client *http.Client, url string, body []byte) (int, string, error) {
	res, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	text, err := io.ReadAll(res.Body)
	return res.StatusCode, string(text), err
}

func readLines(path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	var lines [][]byte
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		if len(scanner.Bytes()) > 0 {
			lines = append(lines, append([]byte(nil), scanner.Bytes()...))
		}
	}
	if err := scanner.Err(); err != nil {
		fail(err)
	}
	return lines
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(2)
}
