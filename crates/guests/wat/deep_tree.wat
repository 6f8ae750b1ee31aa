;; A WASI command that nests directories named "d" under /scratch as deep as the host lets it,
;; up to 100000 levels, holding only one descriptor at a time, and then returns. A tree that
;; deep is longer than any host path and has more levels than a process has file descriptors,
;; which is what trips up a host that measures or removes it naively.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "d")
  (func (export "_start")
    (local $dir i32)
    (local $depth i32)
    (local.set $dir (i32.const 5))
    (block $stopped
      (loop $deeper
        (br_if $stopped
          (call $path_create_directory (local.get $dir) (i32.const 64) (i32.const 1)))
        (br_if $stopped
          (call $path_open (local.get $dir) (i32.const 0) (i32.const 64) (i32.const 1)
            (i32.const 2) (i64.const 0x6000) (i64.const 0x1fffffff) (i32.const 0)
            (i32.const 16)))
        (if (i32.ne (local.get $dir) (i32.const 5))
          (then (drop (call $fd_close (local.get $dir)))))
        (local.set $dir (i32.load (i32.const 16)))
        (local.set $depth (i32.add (local.get $depth) (i32.const 1)))
        (br_if $deeper (i32.lt_u (local.get $depth) (i32.const 100000)))))))
