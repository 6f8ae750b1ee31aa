;; A WASI command that creates /output/partial.txt, writes half of what it meant to, and then
;; traps, as a guest crashing in the middle of its output would.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "partial.txt")
  (data (i32.const 128) "the first half")
  (func (export "_start")
    ;; oflags CREAT | TRUNC, rights fd_write.
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 64) (i32.const 11)
          (i32.const 9) (i64.const 0x40) (i64.const 0) (i32.const 0) (i32.const 16))
      (then unreachable))
    (i32.store (i32.const 0) (i32.const 128))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $fd_write (i32.load (i32.const 16)) (i32.const 0) (i32.const 1) (i32.const 8)))
    unreachable))
