// The worker attempts run in: the page starts it with `new Worker('/app/js/lend/worker.js',
// {type: 'module'})` and posts one order (see sandbox.js's runTask) at a time. It terminates
// the worker when an attempt is stopped or passes its deadline: a guest that loops without a
// WASI call can only be stopped that way, which is why no two attempts share a worker at once.
// A worker whose attempt ended may take the next.
//
// Messages to the page: {type: 'compiled', module, compile_ms} when it compiled the module
// (the page keeps it for the next attempts), {type: 'started'} as the run begins (the
// deadline counts from here), {type: 'memory', bytes} as memory grows, and at the end
// {type: 'done', result}.

import { runTask, transfers, zeroUsage } from './sandbox.js';

function post(message, transfer = []) {
  try {
    self.postMessage(message, transfer);
  } catch (error) {
    // A browser that cannot send a compiled module to the page only loses the cache.
    if (message.type !== 'compiled') throw error;
  }
}

async function serve(order) {
  try {
    const result = await runTask(order, {
      compiled: (module, compileMs) => post({ type: 'compiled', module, compile_ms: compileMs }),
      started: () => post({ type: 'started' }),
      memory: (bytes) => post({ type: 'memory', bytes }),
    });
    post({ type: 'done', result }, transfers(result));
  } catch (error) {
    // A fault of this page's code, not the guest's: another node may do better.
    post({
      type: 'done',
      result: {
        outcome: {
          kind: 'node_error',
          message: `the browser's runner failed: ${error && error.message ? error.message : String(error)}`,
        },
        usage: zeroUsage(),
        stdout: null,
        stderr: null,
        outputs: [],
      },
    });
  }
}

self.addEventListener('message', (event) => serve(event.data));
