;; A WASI command that plays tricks with its preopened directories (3 = /input, read-only;
;; 4 = /output; 5 = /scratch) and writes one errno byte per step to stdout, 0 for success:
;;
;;  0  open /input/data.txt for writing            13  rename /input/data.txt to /output
;;  1  open /input/data.txt with O_TRUNC           14  create /output/x (works)
;;  2  create /input/new.txt                       15  rename /output/x into /input
;;  3  open /input/data.txt read-only (works)      16  unlink /input/data.txt
;;  4  write through that descriptor               17  open /output/..
;;  5  renumber it onto stderr (works)             18  open /scratch/../output/x
;;  6  write to stderr, now the input file         19  close the /input preopen (works)
;;  7  truncate it through stderr                  20  open data.txt under the closed fd 3
;;  8  set its times through stderr                21  renumber /output onto fd 5 (works)
;;  9  set its times by path                       22  create via-renumbered under fd 5 (works)
;; 10  hard link /input/data.txt to /output/hard   23  open .. under fd 5
;; 11  symlink /output/link -> /etc/passwd         24  open x under fd 4, renumbered away
;; 12  symlink /output/rel -> ../input/data.txt
;;
;; Every step not marked "works" must fail, and the host's data.txt must be unchanged.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber"
    (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size"
    (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times"
    (func $fd_filestat_set_times (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link"
    (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename"
    (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file"
    (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "data.txt")
  (data (i32.const 80) "new.txt")
  (data (i32.const 96) "/etc/passwd")
  (data (i32.const 112) "hard")
  (data (i32.const 120) "link")
  (data (i32.const 128) "../input/data.txt")
  (data (i32.const 160) "moved")
  (data (i32.const 168) "x")
  (data (i32.const 180) "..")
  (data (i32.const 192) "via-renumbered")
  (data (i32.const 208) "../output/x")
  (data (i32.const 224) "rel")
  (data (i32.const 232) "tampered")
  ;; Where the next errno byte goes.
  (global $next (mut i32) (i32.const 1024))

  (func $note (param $errno i32)
    (i32.store8 (global.get $next) (local.get $errno))
    (global.set $next (i32.add (global.get $next) (i32.const 1))))

  ;; path_open with every right asked for; the new descriptor lands at 16.
  (func $open (param $dir i32) (param $path i32) (param $len i32) (param $oflags i32)
    (result i32)
    (call $path_open (local.get $dir) (i32.const 0) (local.get $path) (local.get $len)
      (local.get $oflags) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)
      (i32.const 16)))

  ;; Writes "tampered" to $fd.
  (func $tamper (param $fd i32) (result i32)
    (i32.store (i32.const 0) (i32.const 232))
    (i32.store (i32.const 4) (i32.const 8))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))

  (func (export "_start")
    (local $read_only i32)
    ;; 0-2: write access to /input in three spellings.
    (call $note
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 8) (i32.const 0)
        (i64.const 0x42) (i64.const 0) (i32.const 0) (i32.const 16)))
    (call $note (call $open (i32.const 3) (i32.const 64) (i32.const 8) (i32.const 8)))
    (call $note (call $open (i32.const 3) (i32.const 80) (i32.const 7) (i32.const 1)))
    ;; 3-9: a read-only descriptor, then writes through it under another number.
    (call $note
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 8) (i32.const 0)
        (i64.const 0x2) (i64.const 0) (i32.const 0) (i32.const 16)))
    (local.set $read_only (i32.load (i32.const 16)))
    (call $note (call $tamper (local.get $read_only)))
    (call $note (call $fd_renumber (local.get $read_only) (i32.const 2)))
    (call $note (call $tamper (i32.const 2)))
    (call $note (call $fd_filestat_set_size (i32.const 2) (i64.const 0)))
    ;; fst_flags 5: set both atim and mtim to 0 (1970).
    (call $note (call $fd_filestat_set_times (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 5)))
    (call $note
      (call $path_filestat_set_times (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 8)
        (i64.const 0) (i64.const 0) (i32.const 5)))
    ;; 10-12: links out of /output.
    (call $note
      (call $path_link (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 8)
        (i32.const 4) (i32.const 112) (i32.const 4)))
    (call $note
      (call $path_symlink (i32.const 96) (i32.const 11) (i32.const 4) (i32.const 120) (i32.const 4)))
    (call $note
      (call $path_symlink (i32.const 128) (i32.const 17) (i32.const 4) (i32.const 224) (i32.const 3)))
    ;; 13-16: moving files across the read-only boundary.
    (call $note
      (call $path_rename (i32.const 3) (i32.const 64) (i32.const 8) (i32.const 4) (i32.const 160)
        (i32.const 5)))
    (call $note (call $open (i32.const 4) (i32.const 168) (i32.const 1) (i32.const 1)))
    (drop (call $fd_close (i32.load (i32.const 16))))
    (call $note
      (call $path_rename (i32.const 4) (i32.const 168) (i32.const 1) (i32.const 3) (i32.const 168)
        (i32.const 1)))
    (call $note (call $path_unlink_file (i32.const 3) (i32.const 64) (i32.const 8)))
    ;; 17-18: climbing out of a preopen.
    (call $note (call $open (i32.const 4) (i32.const 180) (i32.const 2) (i32.const 2)))
    (call $note (call $open (i32.const 5) (i32.const 208) (i32.const 11) (i32.const 0)))
    ;; 19-24: closing and renumbering the preopens themselves.
    (call $note (call $fd_close (i32.const 3)))
    (call $note (call $open (i32.const 3) (i32.const 64) (i32.const 8) (i32.const 0)))
    (call $note (call $fd_renumber (i32.const 4) (i32.const 5)))
    (call $note (call $open (i32.const 5) (i32.const 192) (i32.const 14) (i32.const 1)))
    (drop (call $fd_close (i32.load (i32.const 16))))
    (call $note (call $open (i32.const 5) (i32.const 180) (i32.const 2) (i32.const 2)))
    (call $note (call $open (i32.const 4) (i32.const 168) (i32.const 1) (i32.const 0)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.sub (global.get $next) (i32.const 1024)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
