// Switchyard dashboard: helpers shared by every page (no build step).
// api() calls the JSON management API with the session cookie and the CSRF
// token; toast() and confirmDialog() give feedback; [data-copy] buttons and
// [data-tabs] groups are wired on every page, including content added later.

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
export const csrf = csrfMeta ? csrfMeta.content : '';

/** Calls the API; resolves to parsed JSON (or null), throws Error(server message). */
export async function api(method, path, body) {
  const headers = { 'X-CSRF-Token': csrf, Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new Error(`Network error: ${error.message}`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const message = data && data.error && data.error.message
      ? data.error.message
      : `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    error.code = data && data.error ? data.error.code : undefined;
    throw error;
  }
  return data;
}

/** Shows a short message in the live region (kind: success, error or info). */
export function toast(message, kind = 'info') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const item = document.createElement('div');
  item.className = `toast toast-${kind}`;
  item.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  item.textContent = message;
  region.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/** Asks for confirmation in a modal dialog; resolves true when confirmed. */
export function confirmDialog(title, message, confirmLabel = 'Confirm') {
  const dialog = document.getElementById('confirm-dialog');
  if (!dialog || typeof dialog.showModal !== 'function') {
    return Promise.resolve(window.confirm(`${title}\n\n${message}`));
  }
  dialog.querySelector('#confirm-title').textContent = title;
  dialog.querySelector('#confirm-message').textContent = message;
  dialog.querySelector('#confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

/** Copies text and says so on the button (and to screen readers). */
export async function copyText(text, button) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      const area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.className = 'sr-only';
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    if (button) {
      const label = button.textContent;
      button.textContent = 'Copied';
      setTimeout(() => { button.textContent = label; }, 1500);
    }
    toast('Copied to the clipboard', 'success');
  } catch (error) {
    toast(`Could not copy: ${error.message}`, 'error');
  }
}

/** Marks a button busy while `work` runs; returns its result. */
export async function busy(button, work) {
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  try {
    return await work();
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
}

/** Escapes text for HTML built in scripts. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function selectTab(group, tab, focus) {
  const tabs = [...group.querySelectorAll('[role="tab"]')];
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute('aria-selected', String(selected));
    other.tabIndex = selected ? 0 : -1;
    const panel = document.getElementById(other.getAttribute('aria-controls'));
    if (panel) panel.hidden = !selected;
  }
  if (focus) tab.focus();
}

document.addEventListener('click', (event) => {
  const copy = event.target.closest('[data-copy]');
  if (copy) {
    event.preventDefault();
    copyText(copy.dataset.copy, copy);
    return;
  }
  const tab = event.target.closest('[data-tabs] [role="tab"]');
  if (tab) selectTab(tab.closest('[data-tabs]'), tab, false);
});

document.addEventListener('keydown', (event) => {
  const tab = event.target.closest && event.target.closest('[data-tabs] [role="tab"]');
  if (!tab) return;
  const tabs = [...tab.closest('[role="tablist"]').querySelectorAll('[role="tab"]')];
  const index = tabs.indexOf(tab);
  let next = null;
  if (event.key === 'ArrowRight') next = tabs[(index + 1) % tabs.length];
  if (event.key === 'ArrowLeft') next = tabs[(index - 1 + tabs.length) % tabs.length];
  if (event.key === 'Home') next = tabs[0];
  if (event.key === 'End') next = tabs[tabs.length - 1];
  if (next) {
    event.preventDefault();
    selectTab(tab.closest('[data-tabs]'), next, true);
  }
});

/**
 * Subscribes to the user's live events (Server-Sent Events with the session
 * cookie); `onEvent(type, data)` for each; `statusEl` shows the connection state.
 */
export function liveEvents(onEvent, statusEl, query = '') {
  if (typeof EventSource === 'undefined') return null;
  const source = new EventSource(`/api/v1/events${query}`);
  const show = (text, on) => {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.classList.toggle('on', on);
  };
  source.onopen = () => { document.body.dataset.live = 'on'; show('live', true); };
  source.onerror = () => { document.body.dataset.live = 'off'; show('reconnecting…', false); };
  source.onmessage = (message) => {
    let data = null;
    try { data = JSON.parse(message.data); } catch { return; }
    onEvent(data.type, data);
  };
  for (const type of ['DEPLOYMENT_STARTED', 'DEPLOYMENT_PROGRESS', 'DEPLOYMENT_COMPLETE', 'DEPLOYMENT_FAILED',
    'ENDPOINT_STATUS_CHANGED', 'ENDPOINT_HEALTH_ALERT', 'ENDPOINT_USAGE_UPDATE', 'CREDITS_LOW_WARNING']) {
    source.addEventListener(type, (message) => {
      let data = null;
      try { data = JSON.parse(message.data); } catch { return; }
      onEvent(type, data);
    });
  }
  window.addEventListener('pagehide', () => source.close());
  return source;
}
