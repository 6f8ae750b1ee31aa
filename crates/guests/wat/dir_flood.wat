;; A WASI command that creates 200 empty directories, /output/d0000 to /output/d0199, as fast
;; as it can and returns: empty directories hold no bytes and are not files, so only a count of
;; every entry, checked again when the guest has already ended, catches them.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $path_create_directory (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "d0000")

  ;; Adds one to the four decimal digits of the name at 65..68.
  (func $next_name
    (local $at i32)
    (local.set $at (i32.const 68))
    (block $done
      (loop $carry
        (br_if $done (i32.lt_u (i32.load8_u (local.get $at)) (i32.const 57)))
        (i32.store8 (local.get $at) (i32.const 48))
        (local.set $at (i32.sub (local.get $at) (i32.const 1)))
        (br $carry)))
    (i32.store8 (local.get $at) (i32.add (i32.load8_u (local.get $at)) (i32.const 1))))

  (func (export "_start")
    (local $made i32)
    (loop $make
      (drop (call $path_create_directory (i32.const 4) (i32.const 64) (i32.const 5)))
      (call $next_name)
      (local.set $made (i32.add (local.get $made) (i32.const 1)))
      (br_if $make (i32.lt_u (local.get $made) (i32.const 200))))))
