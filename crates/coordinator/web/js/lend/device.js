// What the device says about its owner: whether the page is seen, and the battery. Each
// watcher calls back with a reason to pause, or null, at once and on every change, and returns
// a function that stops watching.

export const HIDDEN_REASON = 'the page was hidden';

export function watchVisibility(onReason) {
  const check = () => onReason(document.visibilityState === 'hidden' ? HIDDEN_REASON : null);
  document.addEventListener('visibilitychange', check);
  check();
  return () => document.removeEventListener('visibilitychange', check);
}

// `threshold()` is read at every change, so the owner may move it while lending. Where the
// browser has no Battery Status API (Firefox, Safari) nothing pauses for the battery.
export function watchBattery(threshold, onReason) {
  if (typeof navigator.getBattery !== 'function') return { stop: () => {}, supported: false };
  let battery = null;
  let stopped = false;
  const check = () => {
    if (!battery || stopped) return;
    const percent = Math.round(battery.level * 100);
    const low = !battery.charging && percent < threshold();
    onReason(low ? `the battery is at ${percent} %, below the ${threshold()} % its owner set` : null);
  };
  navigator.getBattery().then((found) => {
    battery = found;
    battery.addEventListener('chargingchange', check);
    battery.addEventListener('levelchange', check);
    check();
  }).catch(() => {});
  return {
    supported: true,
    check,
    stop: () => {
      stopped = true;
      if (battery) {
        battery.removeEventListener('chargingchange', check);
        battery.removeEventListener('levelchange', check);
      }
    },
  };
}
