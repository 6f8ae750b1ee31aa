;; A WASI command that reads every preview 1 clock the way a task fingerprinting its host
;; would, and writes the raw results to stdout: for each clock id 0 to 3 (realtime, monotonic,
;; process and thread CPU time) a 32-byte record of little-endian fields
;;   u32 errno of clock_res_get, u32 0, u64 resolution,
;;   u32 errno of clock_time_get, u32 0, u64 time,
;; then two more monotonic readings taken back to back (u64 each), 144 bytes in all.
(module
  (import "wasi_snapshot_preview1" "clock_res_get"
    (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $id i32)
    (local $record i32)
    (loop $each
      (local.set $record (i32.add (i32.const 1024) (i32.mul (local.get $id) (i32.const 32))))
      (i32.store offset=0 (local.get $record)
        (call $clock_res_get (local.get $id) (i32.add (local.get $record) (i32.const 8))))
      ;; Precision 1 ns: the finest a guest can ask for.
      (i32.store offset=16 (local.get $record)
        (call $clock_time_get (local.get $id) (i64.const 1)
          (i32.add (local.get $record) (i32.const 24))))
      (local.set $id (i32.add (local.get $id) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $id) (i32.const 4))))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1152)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1160)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 144))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
