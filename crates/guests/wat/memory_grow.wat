;; A WASI command that grows its linear memory 1 MiB (16 pages) at a time until memory.grow
;; refuses, then traps, so a memory limit shows up as a trap rather than a clean exit.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow
        (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
