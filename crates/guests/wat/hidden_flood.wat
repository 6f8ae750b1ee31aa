;; A WASI command that hides bytes from a host that measures /scratch by path: it nests 24
;; directories with 200-byte names (the host path grows past PATH_MAX, 4096 bytes, so listing
;; the deepest ones by path fails), writes 8 MiB into a file at the bottom, and returns.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 129 pages: the first for bookkeeping, 8 MiB after it for the payload.
  (memory (export "memory") 129)
  (data (i32.const 256) "big")

  (func $fail (param $errno i32)
    (call $proc_exit (i32.add (i32.const 10) (local.get $errno))))

  (func (export "_start")
    (local $dir i32)
    (local $depth i32)
    (local $errno i32)
    (local $file i32)
    (local $i i32)
    ;; A 200-byte name of 'n's at 1024.
    (loop $fill
      (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.const 110))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 200))))
    (local.set $dir (i32.const 5))
    (loop $deeper
      (local.set $errno
        (call $path_create_directory (local.get $dir) (i32.const 1024) (i32.const 200)))
      (if (local.get $errno) (then (call $fail (local.get $errno))))
      (local.set $errno
        (call $path_open (local.get $dir) (i32.const 0) (i32.const 1024) (i32.const 200)
          (i32.const 2) (i64.const 0x6000) (i64.const 0x1fffffff) (i32.const 0)
          (i32.const 16)))
      (if (local.get $errno) (then (call $fail (local.get $errno))))
      (if (i32.ne (local.get $dir) (i32.const 5)) (then (drop (call $fd_close (local.get $dir)))))
      (local.set $dir (i32.load (i32.const 16)))
      (local.set $depth (i32.add (local.get $depth) (i32.const 1)))
      (br_if $deeper (i32.lt_u (local.get $depth) (i32.const 24))))
    ;; Create "big" (oflags CREAT) and write 8 MiB from 64 KiB on in one call.
    (local.set $errno
      (call $path_open (local.get $dir) (i32.const 0) (i32.const 256) (i32.const 3)
        (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)
        (i32.const 16)))
    (if (local.get $errno) (then (call $fail (local.get $errno))))
    (local.set $file (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 0x800000))
    (local.set $errno
      (call $fd_write (local.get $file) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (local.get $errno) (then (call $fail (local.get $errno))))))
