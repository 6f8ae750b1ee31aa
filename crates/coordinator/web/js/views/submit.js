// #/submit: a job from one of the pool's presets (the ray-traced picture: one task per tile),
// or from a module or Python script of your own (a script runs under the pool's `python`
// preset, mounted at /job as the CLI mounts it), run N times (`{i}` in an argument is the task number) or once
// per input file (`{name}` is the file's name). Files are hashed with BLAKE3, asked for with
// HEAD and uploaded only when the coordinator lacks them.

import { h, fill } from '../dom.js';
import { splitArgs, expandArgs } from '../args.js';
import { ensureBlob } from '../upload.js';
import * as fmt from '../format.js';

const SIDE_MAX = 4096;
const TILE_MIN = 8;
const SAMPLES = [1, 4, 16, 64];
const TASKS_MAX = 1_000_000;
const MODULE_BYTES_MAX = 256 * 1024 * 1024;
const NAME_BYTES_MAX = 200;
const FILE_NAME_BYTES_MAX = 255;
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

const utf8Length = (s) => new TextEncoder().encode(s).length;

export function mount(container, ctx) {
  ctx.title('Submit');
  // The pool's Python runtime, once the presets are in: what a .py file runs under.
  const runtimes = { python: null };
  const presetsBox = h('div', { class: 'presets' }, h('p', { class: 'muted' }, 'Loading presets…'));
  fill(container,
    h('h1', null, 'Submit a job'),
    h('section', { class: 'panel' },
      h('h2', null, 'Ready to run'),
      presetsBox),
    moduleSection(ctx, runtimes));
  loadPresets(ctx, presetsBox, runtimes);
}

async function loadPresets(ctx, box, runtimes) {
  let presets;
  try {
    presets = (await ctx.api.get('/v1/presets', { signal: ctx.signal })).presets || [];
  } catch (error) {
    if (ctx.signal.aborted || ctx.api.isAbort(error) || error.status === 401) return;
    fill(box, h('p', { class: 'muted' }, `No presets: ${error.message}`));
    return;
  }
  runtimes.python = presets.find((p) => p.name === 'python') || null;
  presets = presets.filter((p) => p.name !== 'python');
  if (!presets.length) {
    fill(box, h('p', { class: 'muted' }, 'This pool offers no presets; submit a module of your own below.'));
    return;
  }
  fill(box, presets.map((p) => (p.name === 'render' ? renderForm(ctx, p) : presetForm(ctx, p))));
}

// Runs `work` with the form's controls disabled; shows its error, if any, in #error.
async function busy(ctx, form, work) {
  const controls = [...form.elements].filter((el) => !el.disabled);
  for (const el of controls) el.disabled = true;
  form.classList.add('busy');
  try {
    ctx.clearError('submit');
    await work();
  } catch (error) {
    if (!ctx.api.isAbort(error)) {
      ctx.fail(error, 'submit');
      document.getElementById('error')?.scrollIntoView({ block: 'center' });
    }
  } finally {
    form.classList.remove('busy');
    for (const el of controls) el.disabled = false;
  }
}

async function submitJob(ctx, submission) {
  const answer = await ctx.api.post('/v1/jobs', submission, { signal: ctx.signal });
  if (!answer.job_id) throw new Error('the coordinator did not say which job it made');
  location.hash = `#/jobs/${encodeURIComponent(answer.job_id)}`;
}

function numberField(label, name, value, { min, max, list } = {}) {
  const input = h('input', {
    name, type: 'number', inputmode: 'numeric', value: String(value), min, max, step: 1, required: true, list,
  });
  return { input, el: h('label', { class: 'field' }, h('span', null, label), input) };
}

function intValue(input, label, min, max) {
  const raw = input.value.trim();
  const n = Number(raw);
  if (raw === '' || !Number.isInteger(n) || n < min || n > max) {
    input.focus();
    throw new Error(`${label} must be a whole number from ${min} to ${max}.`);
  }
  return n;
}

// The tiles of a W×H picture, row by row.
export function renderTasks(width, height, tile, samples) {
  const tasks = [];
  for (let y0 = 0; y0 < height; y0 += tile) {
    for (let x0 = 0; x0 < width; x0 += tile) {
      const w = Math.min(tile, width - x0);
      const hh = Math.min(tile, height - y0);
      tasks.push({
        args: ['--width', width, '--height', height, '--x0', x0, '--y0', y0, '--w', w, '--h', hh,
          '--samples', samples].map(String),
      });
    }
  }
  return tasks;
}

function renderForm(ctx, preset) {
  const width = numberField('Width', 'width', 640, { min: 1, max: SIDE_MAX });
  const height = numberField('Height', 'height', 360, { min: 1, max: SIDE_MAX });
  const tile = numberField('Tile size', 'tile', 64, { min: TILE_MIN, max: SIDE_MAX });
  const samples = numberField('Samples per pixel', 'samples', 4, { min: 1, max: 64, list: 'samples-choices' });
  const choices = h('datalist', { id: 'samples-choices' }, SAMPLES.map((s) => h('option', { value: String(s) })));
  const summary = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit' }, 'Render');
  const form = h('form', { id: 'render-form', class: 'preset', novalidate: true, autocomplete: 'off' },
    h('h3', null, preset.title || preset.name),
    preset.description ? h('p', { class: 'muted' }, preset.description) : null,
    h('div', { class: 'grid2' }, width.el, height.el, tile.el, samples.el),
    choices,
    h('p', { class: 'hint small' }, 'Samples: 1, 4, 16 or 64 (more is smoother and slower).'),
    summary,
    button);

  function describe() {
    const W = Number(width.input.value);
    const H = Number(height.input.value);
    const T = Number(tile.input.value);
    if (![W, H, T].every((n) => Number.isInteger(n) && n > 0)) {
      summary.textContent = '';
      return;
    }
    const n = Math.ceil(W / T) * Math.ceil(H / T);
    summary.textContent = `${fmt.int(n)} task${n === 1 ? '' : 's'}, one per tile of up to ${T}×${T} pixels.`;
  }
  form.addEventListener('input', describe);
  describe();

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(ctx, form, async () => {
      const W = intValue(width.input, 'Width', 1, SIDE_MAX);
      const H = intValue(height.input, 'Height', 1, SIDE_MAX);
      const T = intValue(tile.input, 'Tile size', TILE_MIN, SIDE_MAX);
      const S = intValue(samples.input, 'Samples', 1, 64);
      if (!SAMPLES.includes(S)) {
        samples.input.focus();
        throw new Error('Samples must be 1, 4, 16 or 64.');
      }
      await submitJob(ctx, { name: `render ${W}x${H}`, module: preset.module, tasks: renderTasks(W, H, T, S) });
    });
  });
  return form;
}

// A preset other than the picture: its module with arguments, N times.
function presetForm(ctx, preset) {
  const args = h('input', { name: 'args', type: 'text', autocapitalize: 'off', spellcheck: 'false' });
  const count = numberField('Tasks', 'count', 1, { min: 1, max: TASKS_MAX });
  const form = h('form', { class: 'preset', novalidate: true, autocomplete: 'off', data: { preset: preset.name } },
    h('h3', null, preset.title || preset.name),
    preset.description ? h('p', { class: 'muted' }, preset.description) : null,
    h('label', { class: 'field' }, h('span', null, 'Arguments'), args),
    count.el,
    h('button', { type: 'submit' }, 'Run'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(ctx, form, async () => {
      const template = splitArgs(args.value);
      const n = intValue(count.input, 'Tasks', 1, TASKS_MAX);
      const tasks = Array.from({ length: n }, (_, i) => ({ args: expandArgs(template, i) }));
      await submitJob(ctx, { name: preset.name, module: preset.module, tasks });
    });
  });
  return form;
}

function uploadRow(file) {
  const status = h('span', { class: 'muted' }, 'waiting');
  const progress = h('progress', { max: 1, value: 0 });
  const el = h('li', { class: 'upload' },
    h('div', { class: 'upload-head' }, h('span', { class: 'upload-name' }, file.name), h('span', { class: 'muted' }, fmt.bytes(file.size))),
    progress, status);
  const words = { hashing: 'hashing', checking: 'checking', uploading: 'uploading', held: 'already on the pool', uploaded: 'uploaded' };
  return {
    el,
    report(phase, fraction) {
      const pct = Math.round(100 * fraction);
      status.textContent = phase === 'held' || phase === 'uploaded' || phase === 'checking'
        ? words[phase] : `${words[phase]} ${pct} %`;
      progress.value = phase === 'checking' ? 1 : fraction;
      el.dataset.phase = phase;
    },
    failed(message) {
      status.textContent = message;
      el.dataset.phase = 'failed';
    },
  };
}

function moduleSection(ctx, runtimes) {
  const moduleInput = h('input', { type: 'file', name: 'module', accept: '.wasm,.py,application/wasm,text/x-python' });
  const nameInput = h('input', { type: 'text', name: 'name', maxlength: NAME_BYTES_MAX, placeholder: 'named after the module' });
  const argsInput = h('input', { type: 'text', name: 'args', autocapitalize: 'off', spellcheck: 'false', placeholder: '--seed {i}' });
  const sweep = h('input', { type: 'radio', name: 'mode', value: 'sweep', checked: true });
  const perFile = h('input', { type: 'radio', name: 'mode', value: 'inputs' });
  const count = h('input', { type: 'number', name: 'count', inputmode: 'numeric', min: 1, max: TASKS_MAX, value: '1', step: 1 });
  const inputsInput = h('input', { type: 'file', name: 'inputs', multiple: true });
  const inputsBox = h('div', { class: 'indent', hidden: true },
    inputsInput,
    h('p', { class: 'hint small' }, 'Each file is placed in its task’s /input directory under its own name.'));
  const uploads = h('ul', { class: 'uploads' });
  const button = h('button', { type: 'submit' }, 'Upload and submit');

  const form = h('form', { id: 'module-form', novalidate: true, autocomplete: 'off' },
    h('label', { class: 'field' }, h('span', null, 'Module (.wasm, WASI preview 1) or Python script (.py)'), moduleInput),
    h('label', { class: 'field' }, h('span', null, 'Job name'), nameInput),
    h('label', { class: 'field' }, h('span', null, 'Arguments'), argsInput),
    h('p', { class: 'hint small' },
      'Split at spaces; quote an argument to keep its spaces ("a b" or \'a b\'). ',
      h('code', null, '{i}'), ' becomes the task number (0, 1, …), ', h('code', null, '{name}'), ' the input file’s name.'),
    h('fieldset', { class: 'modes' },
      h('legend', null, 'Tasks'),
      h('label', { class: 'choice' }, sweep, h('span', null, 'Run it '), count, h('span', null, ' times')),
      h('label', { class: 'choice' }, perFile, h('span', null, 'One task per input file')),
      inputsBox),
    h('p', { class: 'hint small' }, 'Limits are the pool’s defaults.'),
    uploads,
    button);

  const syncMode = () => {
    inputsBox.hidden = !perFile.checked;
    count.disabled = perFile.checked;
  };
  sweep.addEventListener('change', syncMode);
  perFile.addEventListener('change', syncMode);
  count.addEventListener('focus', () => {
    sweep.checked = true;
    syncMode();
  });
  inputsInput.addEventListener('change', () => {
    if (inputsInput.files.length) {
      perFile.checked = true;
      syncMode();
    }
  });
  moduleInput.addEventListener('change', () => {
    const file = moduleInput.files[0];
    nameInput.placeholder = file ? file.name.replace(/\.(wasm|py)$/i, '') || 'job' : 'named after the module';
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(ctx, form, async () => {
      const module = moduleInput.files[0];
      if (!module) {
        moduleInput.focus();
        throw new Error('Choose a .wasm module first.');
      }
      if (module.size > MODULE_BYTES_MAX) throw new Error(`The module is ${fmt.bytes(module.size)}; a module may be at most 256 MiB.`);
      const script = /\.py$/i.test(module.name);
      if (script && !runtimes.python) {
        throw new Error('This pool has no Python runtime: on the machine that serves it, run `crowdcloud runtimes add python` and start it again.');
      }
      if (script && (module.name.includes('/') || utf8Length(module.name) > FILE_NAME_BYTES_MAX)) {
        throw new Error(`The script's name ${JSON.stringify(module.name)} cannot be a file name in the job.`);
      }
      const name = nameInput.value.trim() || module.name.replace(/\.(wasm|py)$/i, '') || 'job';
      if (utf8Length(name) > NAME_BYTES_MAX) throw new Error('The job name may be at most 200 bytes.');
      if (CONTROL.test(name)) throw new Error('The job name may not hold control characters.');
      const template = splitArgs(argsInput.value);
      let files = [];
      let n = 0;
      if (perFile.checked) {
        files = [...inputsInput.files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        if (!files.length) throw new Error('Choose the input files: one task is made per file.');
        const seen = new Set();
        for (const f of files) {
          if (f.name.includes('/') || f.name === '.' || f.name === '..' || utf8Length(f.name) > FILE_NAME_BYTES_MAX) {
            throw new Error(`The file name ${JSON.stringify(f.name)} cannot be an input's name.`);
          }
          if (seen.has(f.name)) throw new Error(`Two input files are named ${JSON.stringify(f.name)}.`);
          seen.add(f.name);
        }
      } else {
        n = intValue(count, 'The number of tasks', 1, TASKS_MAX);
      }

      const rows = [module, ...files].map((f) => uploadRow(f));
      uploads.replaceChildren(...rows.map((r) => r.el));
      const hashes = [];
      for (const [i, f] of [module, ...files].entries()) {
        try {
          hashes.push(await ensureBlob(ctx.api, f, { signal: ctx.signal, report: rows[i].report }));
        } catch (error) {
          rows[i].failed(error.message);
          throw error;
        }
      }
      const [moduleHash, ...inputHashes] = hashes;
      // A script is the first argument of the interpreter, mounted read-only at /job.
      const first = script ? [`/job/${module.name}`] : [];
      const tasks = perFile.checked
        ? files.map((f, i) => ({ args: [...first, ...expandArgs(template, i, f.name)], inputs: [{ name: f.name, blob: inputHashes[i] }] }))
        : Array.from({ length: n }, (_, i) => ({ args: [...first, ...expandArgs(template, i)] }));
      const submission = script
        ? { name, module: runtimes.python.module, mounts: [{ guest_path: '/job', files: [{ path: module.name, blob: moduleHash }] }], tasks }
        : { name, module: moduleHash, tasks };
      await submitJob(ctx, submission);
    });
  });

  return h('section', { class: 'panel' },
    h('h2', null, 'Your own module'),
    form);
}
