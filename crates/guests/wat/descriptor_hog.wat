;; A WASI command that opens /input (preopen 3) again and again without closing anything, to
;; take every file descriptor the host process has. If an open is refused, or after 100000
;; opens, it writes to stdout the number of opens that worked and the errno that stopped it
;; (two little-endian u32) and returns. A host that hands out its own descriptors without a
;; bound shows up as a count in the tens of thousands; a careful one stops the guest first.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) ".")
  (func (export "_start")
    (local $opened i32)
    (local $errno i32)
    (block $refused
      (loop $open
        ;; oflags DIRECTORY, rights fd_readdir | path_open, result fd at 16.
        (local.set $errno
          (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 1)
            (i32.const 2) (i64.const 0x6000) (i64.const 0x6000) (i32.const 0) (i32.const 16)))
        (br_if $refused (local.get $errno))
        (local.set $opened (i32.add (local.get $opened) (i32.const 1)))
        (br_if $open (i32.lt_u (local.get $opened) (i32.const 100000)))))
    (i32.store (i32.const 1024) (local.get $opened))
    (i32.store (i32.const 1028) (local.get $errno))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
