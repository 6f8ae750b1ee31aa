;; The standardised proposals that current toolchains emit, in one WASI command: exception
;; handling (a tag thrown deep in a call chain and caught by `try_table`), tail calls (a
;; countdown of 100 000 `return_call`s that would overflow the stack as plain calls) and
;; extended constant expressions (a global initialised by arithmetic). It prints
;; "caught 42\n": 42 is the global's value, carried by the exception.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (tag $oops (param i32))
  (global $answer i32 (i32.add (i32.const 40) (i32.const 2)))
  (data (i32.const 16) "caught 00\n")

  (func $throw (param i32)
    (throw $oops (local.get 0)))

  ;; Counts n down with tail calls, then throws `value`.
  (func $countdown (param $n i32) (param $value i32)
    (if (i32.eqz (local.get $n))
      (then (call $throw (local.get $value))))
    (return_call $countdown
      (i32.sub (local.get $n) (i32.const 1))
      (local.get $value)))

  (func (export "_start")
    (local $caught i32)
    (block $handler (result i32)
      (try_table (catch $oops $handler)
        (call $countdown (i32.const 100000) (global.get $answer)))
      (unreachable))
    (local.set $caught)
    ;; The two digits of the caught value go over "00".
    (i32.store8 (i32.const 23)
      (i32.add (i32.const 48) (i32.div_u (local.get $caught) (i32.const 10))))
    (i32.store8 (i32.const 24)
      (i32.add (i32.const 48) (i32.rem_u (local.get $caught) (i32.const 10))))
    ;; One iovec at 0: the line at 16, 10 bytes.
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
