//go:build !linux

package main

// smallPages: transparent huge pages are Linux's.
func smallPages([]byte) {}
