package main

import "syscall"

// smallPages asks that b be mapped with base pages only: with transparent
// huge pages on "always", a first touch would map 2 MB at once and a fault
// count or cost per page would mean something else.
func smallPages(b []byte) {
	_ = syscall.Madvise(b, syscall.MADV_NOHUGEPAGE)
}
