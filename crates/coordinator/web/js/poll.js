// Runs an async step now and then again `interval` ms after each step ends (never two at once),
// until the signal aborts (the view changed). While the tab is hidden the steps wait; they
// resume at once when it shows again. `interval` may be a function, asked after every step.

export function poll(step, interval, signal, onError) {
  let timer = null;
  let running = false;
  let again = false;

  const delay = () => (typeof interval === 'function' ? interval() : interval);

  function schedule(ms) {
    clearTimeout(timer);
    if (!signal.aborted) timer = setTimeout(tick, ms);
  }

  async function tick() {
    if (signal.aborted) return;
    if (document.hidden) {
      schedule(delay());
      return;
    }
    running = true;
    try {
      await step();
    } catch (error) {
      if (!signal.aborted && onError) onError(error);
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      schedule(0);
    } else {
      schedule(delay());
    }
  }

  function onVisibility() {
    if (!document.hidden) now();
  }

  // Runs a step as soon as possible: at once, or right after the one running.
  function now() {
    if (signal.aborted) return;
    if (running) again = true;
    else schedule(0);
  }

  document.addEventListener('visibilitychange', onVisibility);
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibility);
  }, { once: true });
  schedule(0);
  return { now };
}
