;; A WASI command that tries every preview 1 socket call on descriptors 0 to 63 and writes one
;; errno byte per call to stdout: send, recv, accept and shutdown for descriptor 0, then for 1,
;; and so on (256 bytes). Preview 1 cannot create a socket and the sandbox preopens none, so
;; every call must fail; a 0 byte would mean the guest reached a socket.
(module
  (import "wasi_snapshot_preview1" "sock_send"
    (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv"
    (func $sock_recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept"
    (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown"
    (func $sock_shutdown (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; At 0: one iovec {ptr 64, len 4}, the payload to send and the buffer to receive into.
  (data (i32.const 0) "\40\00\00\00\04\00\00\00")
  (data (i32.const 64) "ping")
  (func (export "_start")
    (local $fd i32)
    (local $at i32)
    (local.set $at (i32.const 1024))
    (loop $each
      (i32.store8 offset=0 (local.get $at)
        (call $sock_send (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 16)))
      (i32.store8 offset=1 (local.get $at)
        (call $sock_recv (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 0)
          (i32.const 16) (i32.const 20)))
      (i32.store8 offset=2 (local.get $at)
        (call $sock_accept (local.get $fd) (i32.const 0) (i32.const 16)))
      ;; how = read | write
      (i32.store8 offset=3 (local.get $at)
        (call $sock_shutdown (local.get $fd) (i32.const 3)))
      (local.set $at (i32.add (local.get $at) (i32.const 4)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $fd) (i32.const 64))))
    ;; The 256 errno bytes at 1024 go to stdout through an iovec at 32.
    (i32.store (i32.const 32) (i32.const 1024))
    (i32.store (i32.const 36) (i32.const 256))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))))
