;; A WASI command that hands the host one call with pointers or lengths that do not fit its one
;; page (64 KiB) of memory. argv[1] picks the call by its first letter:
;;
;;  a  args_sizes_get into the last two bytes        h  fd_read of stdin into 100000 bytes at 65000
;;  b  args_get into the last bytes                  i  poll_oneoff of 2^32-1 subscriptions
;;  c  environ_get into the last bytes               j  poll_oneoff reading past the end
;;  d  fd_write with an iovec array past the end     k  clock_time_get into the last byte
;;  e  fd_write of 2^32-1 bytes                      l  random_get of 1000 bytes at 65000
;;  f  fd_write of 2^28 iovecs                       m  fd_readdir of /output into 100000 bytes
;;  g  path_open with a 2^32-1 byte path             n  random_get of 2^32-1 bytes at 0
;;
;; If the call returns, its errno goes to stdout as one byte. WASI says a call handed an
;; out-of-bounds pointer traps, so most of these end the guest; none may touch host memory.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir"
    (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 1)

  ;; The letter of argv[1] as 0 for 'a', 1 for 'b', ...: argc and the buffer size land at 0 and
  ;; 4, the argv pointers at 16, the strings at 256.
  (func $step (result i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $args_get (i32.const 16) (i32.const 256)))
    (i32.sub (i32.load8_u (i32.load (i32.const 20))) (i32.const 97)))

  (func $abuse (param $step i32) (result i32)
    ;; An iovec at 32 claiming 2^32-1 bytes from 100, and one at 40 for 100000 bytes at 65000.
    (i32.store (i32.const 32) (i32.const 100))
    (i32.store (i32.const 36) (i32.const -1))
    (i32.store (i32.const 40) (i32.const 65000))
    (i32.store (i32.const 44) (i32.const 100000))
    (block $n (block $m (block $l (block $k (block $j (block $i (block $h
    (block $g (block $f (block $e (block $d (block $c (block $b (block $a
      (br_table $a $b $c $d $e $f $g $h $i $j $k $l $m $n $n (local.get $step)))
      (return (call $args_sizes_get (i32.const 65534) (i32.const 65535))))
      (return (call $args_get (i32.const 65532) (i32.const 65535))))
      (return (call $environ_get (i32.const 65532) (i32.const 65535))))
      (return (call $fd_write (i32.const 1) (i32.const 65530) (i32.const 2) (i32.const 16))))
      (return (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 16))))
      (return (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0x10000000) (i32.const 16))))
      (return
        (call $path_open (i32.const 4) (i32.const 0) (i32.const 100) (i32.const -1) (i32.const 0)
          (i64.const 0x2) (i64.const 0) (i32.const 0) (i32.const 16))))
      (return (call $fd_read (i32.const 0) (i32.const 40) (i32.const 1) (i32.const 16))))
      (return (call $poll_oneoff (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 16))))
      (return (call $poll_oneoff (i32.const 65500) (i32.const 0) (i32.const 1) (i32.const 16))))
      (return (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 65535))))
      (return (call $random_get (i32.const 65000) (i32.const 1000))))
      (return
        (call $fd_readdir (i32.const 4) (i32.const 65000) (i32.const 100000) (i64.const 0)
          (i32.const 16))))
    (call $random_get (i32.const 0) (i32.const -1)))

  (func (export "_start")
    (i32.store8 (i32.const 1024) (call $abuse (call $step)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
