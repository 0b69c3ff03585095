package bench

import (
	"bufio"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memSampler tracks the peak Go HeapInuse (runtime/metrics, no stop-the-world) while it runs, and
// the process's VmHWM (peak RSS), reset at the start when /proc/self/clear_refs allows it.
type memSampler struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	peak   uint64
}

var heapInuseMetrics = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}

func heapInuse(samples []metrics.Sample) uint64 {
	metrics.Read(samples)
	var s uint64
	for _, m := range samples {
		if m.Value.Kind() == metrics.KindUint64 {
			s += m.Value.Uint64()
		}
	}
	return s
}

func startMemSampler() *memSampler {
	runtime.GC()
	resetVmHWM()
	m := &memSampler{stopCh: make(chan struct{})}
	samples := make([]metrics.Sample, len(heapInuseMetrics))
	for i, name := range heapInuseMetrics {
		samples[i].Name = name
	}
	m.peak = heapInuse(samples)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stopCh:
				return
			case <-tick.C:
				v := heapInuse(samples)
				m.mu.Lock()
				m.peak = max(m.peak, v)
				m.mu.Unlock()
			}
		}
	}()
	return m
}

// stop returns the peak HeapInuse and the VmHWM, in MiB.
func (m *memSampler) stop() (peakMB, vmhwmMB float64) {
	close(m.stopCh)
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(m.peak) / (1 << 20), float64(VmHWMKiB()) / 1024
}

// resetVmHWM resets the peak RSS of the process (Linux ≥ 4.0: "5" > /proc/self/clear_refs).
func resetVmHWM() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// VmHWMKiB returns the VmHWM line of /proc/self/status (KiB), 0 if unavailable.
func VmHWMKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// cpuTime returns the process's user+system CPU time (all threads).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
