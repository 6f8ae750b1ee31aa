// Splitting a line of arguments as a shell would, without running anything: whitespace
// separates arguments; 'single quotes' keep everything literally; "double quotes" keep
// everything but \" and \\; outside quotes a backslash keeps the next character. `''` is an
// empty argument. An unclosed quote is an error.

export function splitArgs(line) {
  const args = [];
  let current = '';
  let inArg = false;
  let i = 0;
  const s = String(line);
  while (i < s.length) {
    const c = s[i];
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new Error('an argument has an unclosed single quote');
      current += s.slice(i + 1, end);
      inArg = true;
      i = end + 1;
    } else if (c === '"') {
      i += 1;
      let closed = false;
      while (i < s.length) {
        const d = s[i];
        if (d === '"') {
          closed = true;
          i += 1;
          break;
        }
        if (d === '\\' && (s[i + 1] === '"' || s[i + 1] === '\\')) {
          current += s[i + 1];
          i += 2;
        } else {
          current += d;
          i += 1;
        }
      }
      if (!closed) throw new Error('an argument has an unclosed double quote');
      inArg = true;
    } else if (c === '\\' && i + 1 < s.length) {
      current += s[i + 1];
      inArg = true;
      i += 2;
    } else if (/\s/.test(c)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
      i += 1;
    } else {
      current += c;
      inArg = true;
      i += 1;
    }
  }
  if (inArg) args.push(current);
  return args;
}

// The arguments of task `index`: `{i}` becomes the index and `{name}` the input file's name,
// as `crowdcloud submit` does.
export function expandArgs(template, index, name = '') {
  return template.map((arg) => arg.replaceAll('{i}', String(index)).replaceAll('{name}', name));
}

// The value after each `--flag` of a task's arguments, e.g. {width: "640", x0: "0", …}.
export function flags(args) {
  const out = {};
  for (let i = 0; i + 1 < args.length; i += 1) {
    if (args[i].startsWith('--')) out[args[i].slice(2)] = args[i + 1];
  }
  return out;
}
