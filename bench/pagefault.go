package main

import (
	"fmt"
	"syscall"
	"time"
)

// pageFaultCost is what one minor page fault costs on this machine: the
// time to touch each page of a fresh anonymous mapping once (the kernel
// maps and zeroes a page on each first touch), per page. The cost figures
// count faults per task (dbCost.DBFaults, ProcFaults); this turns them into
// time. It differs widely between machines: about 10 µs on a Firecracker
// guest whose memory the host hands out on demand, well under 1 µs on
// bare metal, so a run's faults weigh on its CPU figures by machine
// (docs/performance.md, twenty-seventh round).
func pageFaultCost() (time.Duration, error) {
	const size = 64 << 20
	page := syscall.Getpagesize()
	best := time.Duration(0)
	for range 3 {
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return 0, fmt.Errorf("error mapping memory: %w", err)
		}
		smallPages(b)
		start := time.Now()
		for i := 0; i < size; i += page {
			b[i] = 1
		}
		d := time.Since(start) / time.Duration(size/page)
		if err := syscall.Munmap(b); err != nil {
			return 0, fmt.Errorf("error unmapping memory: %w", err)
		}
		if best == 0 || d < best {
			best = d
		}
	}
	return best, nil
}
