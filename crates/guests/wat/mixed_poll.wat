;; A WASI command that sleeps for an hour in ways that mix a clock with a descriptor in one
;; poll_oneoff, which a host may hand to a sleeping implementation it cannot interrupt: the
;; clock with stdin (fd 0) to read, with stdout (fd 1) to write, and with /input (fd 3, a
;; directory) to read. It writes the errno and the event count of each poll to stdout
;; (u32 each, little-endian) and returns.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 2048))

  ;; Polls a one-hour relative monotonic clock together with $fd for $tag (1 read, 2 write).
  (func $hour_or (param $tag i32) (param $fd i32)
    ;; Subscription 0 at 0: userdata 1, tag clock, clock id 1, timeout 3600 s, flags 0.
    (i64.store (i32.const 0) (i64.const 1))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    ;; Subscription 1 at 48: userdata 2, the descriptor.
    (i64.store (i32.const 48) (i64.const 2))
    (i32.store8 (i32.const 56) (local.get $tag))
    (i32.store (i32.const 64) (local.get $fd))
    (i32.store (i32.const 1024) (i32.const 0))
    (i32.store (global.get $next)
      (call $poll_oneoff (i32.const 0) (i32.const 512) (i32.const 2) (i32.const 1024)))
    (i32.store offset=4 (global.get $next) (i32.load (i32.const 1024)))
    (global.set $next (i32.add (global.get $next) (i32.const 8))))

  (func (export "_start")
    (call $hour_or (i32.const 1) (i32.const 0))
    (call $hour_or (i32.const 2) (i32.const 1))
    (call $hour_or (i32.const 1) (i32.const 3))
    (i32.store (i32.const 1536) (i32.const 2048))
    (i32.store (i32.const 1540) (i32.const 24))
    (drop (call $fd_write (i32.const 1) (i32.const 1536) (i32.const 1) (i32.const 1544)))))
