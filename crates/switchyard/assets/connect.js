// <switchyard-connect>: pick one of your Switchyard endpoints and get working code.
//
//   <script type="module" src="https://switchyard.example.com/connect.js"></script>
//   <switchyard-connect modality="llm" show-quick-actions></switchyard-connect>
//
// Attributes: server (default: the origin this script came from), modality,
// source-type, connected-endpoint-id, size (sm|md|lg), variant
// (default|outline|minimal), placeholder, show-quick-actions, token.
// The `token` attribute or the `.token` property carries a management token
// for pages on another origin (which must be listed in the server's
// --cors-allowed-origins); a page served by Switchyard itself leaves it out and
// the session cookie is used. Selecting an endpoint sets connected-endpoint-id
// and dispatches a `connect` CustomEvent (bubbles, composed) whose detail is
// { endpointId, url, modelName, modality, provider, status,
//   openaiConfig: { baseUrl, model }, samples }.
// Hand-written, no build step, no dependencies.

const SCRIPT_ORIGIN = new URL(import.meta.url).origin;

const SAMPLE_TABS = [
  ['python', 'Python'],
  ['typescript', 'TypeScript'],
  ['curl', 'cURL'],
  ['openai_compatible', 'OpenAI SDK compatible'],
];

const MODALITY_LABELS = {
  llm: 'Language models',
  embedding: 'Embeddings',
  image: 'Image',
  video: 'Video',
  audio: 'Audio',
};

const STATUS_LABELS = {
  active: 'Active',
  provisioning: 'Provisioning',
  scaling: 'Scaling',
  idle: 'Idle',
  error: 'Error',
  stopped: 'Stopped',
  terminated: 'Terminated',
};

const STYLES = `
:host {
  --sy-accent: #4f46e5;
  --sy-accent-strong: #4338ca;
  --sy-text: #0f172a;
  --sy-muted: #64748b;
  --sy-border: #e2e8f0;
  --sy-surface: #ffffff;
  --sy-subtle: #f8fafc;
  --sy-hover: #eef2ff;
  --sy-radius: 8px;
  --sy-font: ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --sy-mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  display: inline-block;
  position: relative;
  font-family: var(--sy-font);
  color: var(--sy-text);
  font-size: 14px;
  line-height: 1.4;
}
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.sr-only {
  position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0;
}
button, input, a { font: inherit; }
:focus-visible { outline: 2px solid var(--sy-accent); outline-offset: 2px; }

.trigger {
  display: inline-flex; align-items: center; gap: 8px; max-width: 100%;
  border: 1px solid var(--sy-accent); border-radius: var(--sy-radius);
  background: var(--sy-accent); color: #fff; cursor: pointer;
  padding: 8px 14px; font-weight: 600;
  box-shadow: 0 1px 2px rgba(15, 23, 42, 0.08);
}
.trigger:hover { background: var(--sy-accent-strong); }
.variant-outline .trigger { background: var(--sy-surface); color: var(--sy-accent); }
.variant-outline .trigger:hover { background: var(--sy-hover); }
.variant-minimal .trigger {
  background: transparent; color: var(--sy-text); border-color: transparent; box-shadow: none;
}
.variant-minimal .trigger:hover { background: var(--sy-subtle); }
.size-sm .trigger { padding: 4px 10px; font-size: 13px; }
.size-lg .trigger { padding: 12px 18px; font-size: 16px; }
.trigger-label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.chevron { font-size: 0.8em; opacity: 0.8; }

.panel {
  position: absolute; z-index: 1000; top: calc(100% + 6px); left: 0;
  width: min(30rem, calc(100vw - 16px));
  background: var(--sy-surface); color: var(--sy-text);
  border: 1px solid var(--sy-border); border-radius: 12px;
  box-shadow: 0 12px 32px rgba(15, 23, 42, 0.16), 0 2px 6px rgba(15, 23, 42, 0.06);
  overflow: hidden;
}
.search {
  display: flex; align-items: center; gap: 8px;
  padding: 10px 12px; border-bottom: 1px solid var(--sy-border); background: var(--sy-subtle);
}
.search input {
  flex: 1; min-width: 0; border: 1px solid var(--sy-border); border-radius: var(--sy-radius);
  padding: 7px 10px; background: var(--sy-surface); color: var(--sy-text);
}
.search input:focus { outline: 2px solid var(--sy-accent); outline-offset: 0; border-color: var(--sy-accent); }
.body { max-height: min(26rem, 70vh); overflow-y: auto; }
.message { padding: 20px 16px; text-align: center; color: var(--sy-muted); }
.message strong { display: block; color: var(--sy-text); margin-bottom: 4px; }
.message.error strong { color: #b91c1c; }
.message a, .message button.link { color: var(--sy-accent); font-weight: 600; }
.spinner {
  display: inline-block; width: 16px; height: 16px; vertical-align: -3px; margin-right: 8px;
  border: 2px solid var(--sy-border); border-top-color: var(--sy-accent); border-radius: 50%;
  animation: spin 0.8s linear infinite;
}
@keyframes spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { .spinner { animation: none; } }

ul { list-style: none; margin: 0; padding: 0; }
.group-header {
  position: sticky; top: 0; z-index: 1;
  padding: 8px 14px 4px; background: var(--sy-surface);
  font-size: 11px; font-weight: 700; letter-spacing: 0.06em; text-transform: uppercase; color: var(--sy-muted);
}
.row {
  display: flex; align-items: center; gap: 6px; padding: 2px 8px 2px 6px; margin: 0 6px;
  border-radius: var(--sy-radius);
}
.row.active { background: var(--sy-hover); }
.row.connected .name::after { content: " ✓"; color: var(--sy-accent); }
.option {
  flex: 1; min-width: 0; display: flex; align-items: center; gap: 10px;
  padding: 8px 6px; cursor: pointer;
}
.option-text { min-width: 0; display: flex; flex-direction: column; }
.name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.meta { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; font-size: 12px; color: var(--sy-muted); }
.model { font-family: var(--sy-mono); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 14rem; }
.dot { flex: none; width: 9px; height: 9px; border-radius: 50%; background: #94a3b8; }
.dot-active { background: #16a34a; box-shadow: 0 0 0 3px rgba(22, 163, 74, 0.15); }
.dot-provisioning, .dot-scaling { background: #d97706; }
.dot-idle { background: #64748b; }
.dot-error { background: #dc2626; }
.dot-stopped { background: #9ca3af; }
.badge {
  display: inline-block; padding: 1px 7px; border-radius: 999px;
  border: 1px solid var(--sy-border); background: var(--sy-subtle); color: var(--sy-text);
  font-size: 11px; font-weight: 600;
}
.actions { flex: none; display: flex; gap: 2px; }
.action {
  border: 1px solid transparent; background: transparent; color: var(--sy-muted);
  border-radius: 6px; padding: 4px 7px; font-size: 12px; font-weight: 600; cursor: pointer;
  text-decoration: none; white-space: nowrap;
}
.action:hover, .action:focus-visible { color: var(--sy-accent); background: var(--sy-surface); border-color: var(--sy-border); }

.code-view { padding: 12px 14px 14px; }
.code-head { display: flex; align-items: center; gap: 8px; margin-bottom: 10px; }
.code-title { flex: 1; min-width: 0; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.config { font-size: 12px; color: var(--sy-muted); margin: 0 0 10px; word-break: break-all; }
.config code { font-family: var(--sy-mono); color: var(--sy-text); }
.tabs { display: flex; flex-wrap: wrap; gap: 2px; border-bottom: 1px solid var(--sy-border); margin-bottom: 8px; }
.tab {
  border: 0; border-bottom: 2px solid transparent; background: transparent; color: var(--sy-muted);
  padding: 6px 10px; font-size: 13px; font-weight: 600; cursor: pointer; margin-bottom: -1px;
}
.tab[aria-selected="true"] { color: var(--sy-accent); border-bottom-color: var(--sy-accent); }
pre {
  margin: 0; padding: 12px; max-height: 16rem; overflow: auto;
  background: #0f172a; color: #e2e8f0; border-radius: var(--sy-radius);
  font-family: var(--sy-mono); font-size: 12px; line-height: 1.5; white-space: pre;
}
.code-actions { display: flex; justify-content: flex-end; gap: 8px; margin-top: 8px; }
.btn {
  border: 1px solid var(--sy-border); background: var(--sy-surface); color: var(--sy-text);
  border-radius: var(--sy-radius); padding: 6px 12px; font-size: 13px; font-weight: 600; cursor: pointer;
  text-decoration: none;
}
.btn:hover { border-color: var(--sy-accent); color: var(--sy-accent); }
.footer {
  display: flex; justify-content: space-between; gap: 8px; padding: 8px 14px;
  border-top: 1px solid var(--sy-border); background: var(--sy-subtle); font-size: 12px; color: var(--sy-muted);
}
.footer a { color: var(--sy-accent); font-weight: 600; text-decoration: none; }

@media (max-width: 520px) {
  :host { display: block; }
  .trigger { width: 100%; justify-content: space-between; }
  .panel { position: fixed; left: 8px; right: 8px; top: auto; width: auto; }
  .row { flex-wrap: wrap; }
  .actions { width: 100%; padding: 0 0 6px 22px; }
  .model { max-width: 10rem; }
}
`;

/// Creates an element: h('a', { href, class: 'x', onclick }, child, 'text').
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      element.textContent = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function cssIdent(text) {
  return String(text).replace(/[^a-zA-Z0-9_-]/g, '_');
}

async function copyToClipboard(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Pages without the clipboard permission: the selection-based fallback.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } finally {
      area.remove();
    }
    return copied;
  }
}

export class SwitchyardConnect extends HTMLElement {
  static observedAttributes = [
    'server',
    'modality',
    'source-type',
    'connected-endpoint-id',
    'size',
    'variant',
    'placeholder',
    'show-quick-actions',
    'token',
  ];

  #token = null;
  #endpoints = [];
  #loadState = 'idle'; // idle | loading | ready | error
  #errorMessage = '';
  #loadGeneration = 0;
  #open = false;
  #view = 'list'; // list | code
  #codeEndpoint = null;
  #codeTab = 'python';
  #query = '';
  #activeIndex = -1;
  #visible = [];
  #parts = {};
  #onDocumentPointerDown = (event) => {
    if (this.#open && !event.composedPath().includes(this)) this.close({ focusButton: false });
  };

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    const button = h(
      'button',
      {
        class: 'trigger',
        type: 'button',
        part: 'button',
        'aria-haspopup': 'listbox',
        'aria-expanded': 'false',
        'aria-controls': 'panel',
        onclick: () => (this.#open ? this.close() : this.open()),
        onkeydown: (event) => {
          if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
            event.preventDefault();
            this.open();
          }
        },
      },
      h('span', { class: 'dot', 'aria-hidden': 'true', hidden: true }),
      h('span', { class: 'trigger-label' }),
      h('span', { class: 'chevron', 'aria-hidden': 'true', text: '▾' }),
    );
    const search = h('input', {
      type: 'search',
      role: 'combobox',
      'aria-label': 'Search endpoints',
      'aria-autocomplete': 'list',
      'aria-expanded': 'true',
      'aria-controls': 'listbox',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'Search endpoints',
      oninput: () => {
        this.#query = search.value;
        this.#activeIndex = 0;
        this.#renderBody();
      },
      onkeydown: (event) => this.#onSearchKey(event),
    });
    const body = h('div', { class: 'body' });
    const live = h('div', { class: 'sr-only', role: 'status', 'aria-live': 'polite' });
    const footer = h('div', { class: 'footer' });
    const panel = h(
      'div',
      {
        class: 'panel',
        id: 'panel',
        part: 'panel',
        hidden: true,
        onkeydown: (event) => this.#onPanelKey(event),
        onfocusout: (event) => {
          const next = event.relatedTarget;
          if (this.#open && next && !this.shadowRoot.contains(next) && next !== this) {
            this.close({ focusButton: false });
          }
        },
      },
      h('div', { class: 'search' }, search),
      body,
      footer,
    );
    const wrapper = h('div', { class: 'wrapper' }, button, panel, live);
    root.append(h('style', { text: STYLES }), wrapper);
    this.#parts = { wrapper, button, panel, search, body, live, footer };
  }

  /// A management token for pages on another origin; never reflected into the DOM.
  get token() {
    return this.#token ?? this.getAttribute('token');
  }

  set token(value) {
    this.#token = value ? String(value) : null;
    this.#invalidate();
  }

  get server() {
    return (this.getAttribute('server') || SCRIPT_ORIGIN).replace(/\/+$/, '');
  }

  get connectedEndpointId() {
    return this.getAttribute('connected-endpoint-id');
  }

  set connectedEndpointId(value) {
    if (value) this.setAttribute('connected-endpoint-id', value);
    else this.removeAttribute('connected-endpoint-id');
  }

  /// The endpoints last loaded.
  get endpoints() {
    return this.#endpoints.slice();
  }

  connectedCallback() {
    document.addEventListener('pointerdown', this.#onDocumentPointerDown, true);
    this.#renderChrome();
    if (this.connectedEndpointId) this.refresh();
  }

  disconnectedCallback() {
    document.removeEventListener('pointerdown', this.#onDocumentPointerDown, true);
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue) return;
    if (['server', 'modality', 'source-type', 'token'].includes(name)) {
      this.#invalidate();
    } else if (name === 'connected-endpoint-id' && this.isConnected && this.#loadState === 'idle') {
      this.refresh();
    }
    this.#renderChrome();
    if (this.#open) this.#renderBody();
  }

  /// Opens the dropdown and focuses its search box.
  open() {
    if (this.#open) return;
    this.#open = true;
    this.#view = 'list';
    this.#parts.panel.hidden = false;
    this.#parts.button.setAttribute('aria-expanded', 'true');
    if (this.#loadState === 'idle' || this.#loadState === 'error') this.refresh();
    const connected = this.#endpoints.findIndex((endpoint) => endpoint.id === this.connectedEndpointId);
    this.#activeIndex = Math.max(0, connected);
    this.#renderBody();
    this.#parts.search.focus();
  }

  /// Closes the dropdown; focus goes back to the button unless told otherwise.
  close({ focusButton = true } = {}) {
    if (!this.#open) return;
    this.#open = false;
    this.#view = 'list';
    this.#parts.panel.hidden = true;
    this.#parts.button.setAttribute('aria-expanded', 'false');
    this.#parts.search.removeAttribute('aria-activedescendant');
    if (focusButton) this.#parts.button.focus();
  }

  /// Loads the endpoints again.
  async refresh() {
    const generation = ++this.#loadGeneration;
    this.#loadState = 'loading';
    if (this.#open) this.#renderBody();
    const params = new URLSearchParams();
    const modality = this.getAttribute('modality');
    const sourceType = this.getAttribute('source-type');
    if (modality) params.set('modality', modality);
    if (sourceType) params.set('source_type', sourceType);
    const query = params.toString();
    const url = `${this.server}/api/v1/connect/endpoints${query ? `?${query}` : ''}`;
    const token = this.token;
    try {
      const response = await fetch(url, {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        // A token needs no cookie; without one, only the server's own pages send theirs.
        credentials: token ? 'omit' : 'same-origin',
        cache: 'no-store',
      });
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      if (generation !== this.#loadGeneration) return;
      if (!response.ok) {
        const message = body?.error?.message ?? `the server answered ${response.status}`;
        throw new Error(
          response.status === 401 && !token
            ? `${message}. Sign in to Switchyard, or give this widget a management token.`
            : message,
        );
      }
      this.#endpoints = Array.isArray(body?.data) ? body.data : [];
      this.#loadState = 'ready';
      this.#announce(`${this.#endpoints.length} endpoints loaded`);
    } catch (error) {
      if (generation !== this.#loadGeneration) return;
      this.#loadState = 'error';
      this.#errorMessage =
        error instanceof TypeError
          ? `Cannot reach ${this.server}: check the server address and that this page's origin is allowed (--cors-allowed-origins).`
          : error.message;
      this.#announce(`Could not load endpoints: ${this.#errorMessage}`);
    }
    this.#renderChrome();
    if (this.#open) {
      const connected = this.#endpoints.findIndex((endpoint) => endpoint.id === this.connectedEndpointId);
      this.#activeIndex = Math.max(0, connected);
      const focusLost = !this.shadowRoot.activeElement || this.shadowRoot.activeElement.closest('[hidden]');
      this.#renderBody();
      if (this.#view === 'list' && !this.#parts.search.closest('[hidden]') && (focusLost || !this.shadowRoot.activeElement)) {
        this.#parts.search.focus();
      }
    }
  }

  #invalidate() {
    this.#loadGeneration += 1;
    this.#loadState = 'idle';
    this.#endpoints = [];
    if (this.#open || (this.isConnected && this.connectedEndpointId)) this.refresh();
  }

  #announce(message) {
    // Re-set so repeated messages are read again.
    this.#parts.live.textContent = '';
    requestAnimationFrame(() => {
      this.#parts.live.textContent = message;
    });
  }

  #renderChrome() {
    const { wrapper, button } = this.#parts;
    const size = ['sm', 'md', 'lg'].includes(this.getAttribute('size')) ? this.getAttribute('size') : 'md';
    const variant = ['default', 'outline', 'minimal'].includes(this.getAttribute('variant'))
      ? this.getAttribute('variant')
      : 'default';
    wrapper.className = `wrapper size-${size} variant-${variant}`;
    const connected = this.#endpoints.find((endpoint) => endpoint.id === this.connectedEndpointId);
    const dot = button.querySelector('.dot');
    const label = button.querySelector('.trigger-label');
    if (connected) {
      dot.hidden = false;
      dot.className = `dot dot-${cssIdent(connected.status)}`;
      label.textContent = connected.name;
      button.setAttribute(
        'aria-label',
        `Connected to ${connected.name} (${STATUS_LABELS[connected.status] ?? connected.status}). Change endpoint`,
      );
    } else {
      dot.hidden = true;
      label.textContent = this.getAttribute('placeholder') || 'Connect an endpoint';
      button.removeAttribute('aria-label');
    }
  }

  #filtered() {
    const needle = this.#query.trim().toLowerCase();
    if (!needle) return this.#endpoints;
    return this.#endpoints.filter((endpoint) =>
      [endpoint.name, endpoint.model, endpoint.description, endpoint.base_model, endpoint.provider, endpoint.modality]
        .filter(Boolean)
        .some((text) => String(text).toLowerCase().includes(needle)),
    );
  }

  #renderBody() {
    const { body, search, footer } = this.#parts;
    const nothingToSearch =
      this.#loadState === 'error' || (this.#loadState === 'ready' && this.#endpoints.length === 0);
    const searchHadFocus = this.shadowRoot.activeElement === search;
    search.closest('.search').hidden = this.#view !== 'list' || nothingToSearch;
    footer.replaceChildren(
      h('span', { text: 'Switchyard' }),
      h('a', { href: `${this.server}/endpoints`, target: '_blank', rel: 'noopener', text: 'All endpoints ↗' }),
    );
    if (this.#view === 'code' && this.#codeEndpoint) {
      body.replaceChildren(this.#codeView(this.#codeEndpoint));
      return;
    }
    search.removeAttribute('aria-activedescendant');
    if (this.#loadState === 'loading' || this.#loadState === 'idle') {
      body.replaceChildren(
        h('div', { class: 'message', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading endpoints…'),
      );
      return;
    }
    if (this.#loadState === 'error') {
      body.replaceChildren(
        h(
          'div',
          { class: 'message error', role: 'alert' },
          h('strong', { text: 'Could not load your endpoints' }),
          h('span', { class: 'error-text', text: this.#errorMessage }),
          h('div', {}, h('button', { type: 'button', class: 'btn retry', onclick: () => this.refresh(), text: 'Try again' })),
        ),
      );
      if (searchHadFocus) body.querySelector('.retry').focus();
      return;
    }
    if (this.#endpoints.length === 0) {
      body.replaceChildren(
        h(
          'div',
          { class: 'message empty' },
          h('strong', { text: 'No endpoints yet' }),
          h('p', { text: 'Deploy a model to get an endpoint you can connect to.' }),
          h('a', { class: 'btn deploy-link', href: `${this.server}/deploy`, target: '_blank', rel: 'noopener', text: 'Deploy a model' }),
        ),
      );
      if (searchHadFocus) body.querySelector('.deploy-link').focus();
      return;
    }
    this.#visible = this.#filtered();
    if (this.#visible.length === 0) {
      body.replaceChildren(
        h('div', { class: 'message no-match', role: 'status' }, `No endpoints match “${this.#query.trim()}”.`),
      );
      return;
    }
    this.#activeIndex = Math.min(Math.max(this.#activeIndex, 0), this.#visible.length - 1);
    const groups = new Map();
    this.#visible.forEach((endpoint, index) => {
      if (!groups.has(endpoint.modality)) groups.set(endpoint.modality, []);
      groups.get(endpoint.modality).push([endpoint, index]);
    });
    const showActions = this.hasAttribute('show-quick-actions') && this.getAttribute('show-quick-actions') !== 'false';
    const listbox = h('ul', { role: 'listbox', id: 'listbox', 'aria-label': 'Endpoints' });
    for (const [modality, entries] of groups) {
      const headerId = `group-${cssIdent(modality)}`;
      listbox.append(
        h(
          'li',
          { role: 'presentation', class: 'group', 'data-modality': modality },
          h('div', { class: 'group-header', id: headerId, role: 'presentation', text: MODALITY_LABELS[modality] ?? modality }),
          h(
            'ul',
            { role: 'group', 'aria-labelledby': headerId },
            entries.map(([endpoint, index]) => this.#row(endpoint, index, showActions)),
          ),
        ),
      );
    }
    body.replaceChildren(listbox);
    this.#syncActive();
  }

  #row(endpoint, index, showActions) {
    const active = index === this.#activeIndex;
    const connected = endpoint.id === this.connectedEndpointId;
    const status = STATUS_LABELS[endpoint.status] ?? endpoint.status;
    const option = h(
      'div',
      {
        role: 'option',
        class: 'option',
        id: `option-${cssIdent(endpoint.id)}`,
        'aria-selected': connected ? 'true' : 'false',
        'data-endpoint-id': endpoint.id,
        onclick: () => this.#select(endpoint),
        onpointermove: () => {
          if (this.#activeIndex !== index) {
            this.#activeIndex = index;
            this.#syncActive();
          }
        },
      },
      h('span', { class: `dot dot-${cssIdent(endpoint.status)}`, 'aria-hidden': 'true', title: status }),
      h(
        'span',
        { class: 'option-text' },
        h('span', { class: 'name', text: endpoint.name }),
        h(
          'span',
          { class: 'meta' },
          h('span', { class: 'sr-only', text: `Status: ${status}.` }),
          h('span', { class: 'status-text', text: status }),
          h('span', { class: 'badge provider', text: endpoint.provider }),
          endpoint.model && endpoint.model !== endpoint.name ? h('span', { class: 'model', text: endpoint.model }) : null,
        ),
      ),
    );
    const actions = showActions
      ? h(
          'div',
          { class: 'actions', role: 'presentation' },
          h('button', {
            type: 'button',
            class: 'action copy-url',
            tabindex: active ? '0' : '-1',
            'aria-label': `Copy the URL of ${endpoint.name}`,
            text: 'Copy URL',
            onclick: (event) => this.#copy(event.currentTarget, endpoint.endpoint_url, 'URL copied'),
          }),
          h('button', {
            type: 'button',
            class: 'action view-code',
            tabindex: active ? '0' : '-1',
            'aria-label': `Code samples for ${endpoint.name}`,
            text: 'Code',
            onclick: () => this.#showCode(endpoint),
          }),
          h('a', {
            class: 'action manage',
            href: endpoint.manage_url,
            target: '_blank',
            rel: 'noopener',
            tabindex: active ? '0' : '-1',
            'aria-label': `Manage ${endpoint.name} in Switchyard (opens a new tab)`,
            text: 'Manage',
          }),
        )
      : null;
    return h(
      'li',
      {
        role: 'presentation',
        class: `row${active ? ' active' : ''}${connected ? ' connected' : ''}`,
        'data-index': index,
      },
      option,
      actions,
    );
  }

  #syncActive() {
    const { body, search } = this.#parts;
    body.querySelectorAll('.row').forEach((row) => {
      const active = Number(row.dataset.index) === this.#activeIndex;
      row.classList.toggle('active', active);
      row.querySelectorAll('.action').forEach((action) => action.setAttribute('tabindex', active ? '0' : '-1'));
      if (active) {
        const option = row.querySelector('[role=option]');
        search.setAttribute('aria-activedescendant', option.id);
        row.scrollIntoView({ block: 'nearest' });
      }
    });
  }

  #move(index) {
    if (this.#visible.length === 0) return;
    this.#activeIndex = Math.min(Math.max(index, 0), this.#visible.length - 1);
    this.#syncActive();
  }

  #onSearchKey(event) {
    if (this.#view !== 'list') return;
    switch (event.key) {
      case 'ArrowDown':
        event.preventDefault();
        this.#move(this.#activeIndex + 1);
        break;
      case 'ArrowUp':
        event.preventDefault();
        this.#move(this.#activeIndex - 1);
        break;
      case 'Home':
        if (this.#visible.length > 0) {
          event.preventDefault();
          this.#move(0);
        }
        break;
      case 'End':
        if (this.#visible.length > 0) {
          event.preventDefault();
          this.#move(this.#visible.length - 1);
        }
        break;
      case 'Enter': {
        event.preventDefault();
        const endpoint = this.#visible[this.#activeIndex];
        if (endpoint) this.#select(endpoint);
        break;
      }
      default:
        break;
    }
  }

  #onPanelKey(event) {
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      if (this.#view === 'code') {
        this.#backToList();
      } else {
        this.close();
      }
    } else if (event.key === 'Tab' && !event.shiftKey) {
      // Tab past the last control closes the dropdown and moves on from the button.
      const focusable = [...this.#parts.panel.querySelectorAll('input, button, a, pre, [tabindex="0"]')].filter(
        (element) => !element.closest('[hidden]') && element.getAttribute('tabindex') !== '-1',
      );
      if (focusable.at(-1) === this.shadowRoot.activeElement) {
        event.preventDefault();
        this.close();
      }
    }
  }

  #select(endpoint) {
    this.connectedEndpointId = endpoint.id;
    this.#renderChrome();
    this.close();
    this.#announce(`Connected to ${endpoint.name}`);
    this.dispatchEvent(
      new CustomEvent('connect', {
        bubbles: true,
        composed: true,
        detail: {
          endpointId: endpoint.id,
          url: endpoint.endpoint_url,
          modelName: endpoint.model,
          modality: endpoint.modality,
          provider: endpoint.provider,
          status: endpoint.status,
          openaiConfig: { baseUrl: endpoint.openaiConfig?.baseUrl, model: endpoint.openaiConfig?.model },
          samples: endpoint.samples ?? {},
        },
      }),
    );
  }

  async #copy(button, text, doneMessage) {
    const label = button.textContent;
    const copied = await copyToClipboard(text);
    button.textContent = copied ? 'Copied' : 'Copy failed';
    this.#announce(copied ? doneMessage : 'Could not copy: select the text and copy it by hand');
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  }

  #showCode(endpoint) {
    this.#view = 'code';
    this.#codeEndpoint = endpoint;
    const available = this.#sampleTabs(endpoint).map(([key]) => key);
    if (!available.includes(this.#codeTab)) this.#codeTab = available[0] ?? 'python';
    this.#renderBody();
    this.#parts.body.querySelector('.tab[aria-selected="true"]')?.focus();
  }

  #backToList() {
    const endpointId = this.#codeEndpoint?.id;
    this.#view = 'list';
    this.#codeEndpoint = null;
    this.#renderBody();
    const index = this.#visible.findIndex((endpoint) => endpoint.id === endpointId);
    if (index >= 0) this.#move(index);
    this.#parts.search.focus();
  }

  #sampleTabs(endpoint) {
    const samples = endpoint.samples ?? {};
    return SAMPLE_TABS.map(([key, label]) => {
      if (typeof samples[key] === 'string') return [key, label, samples[key]];
      if (key === 'openai_compatible' && endpoint.openaiConfig) {
        // Servers without this sample: the two settings every OpenAI client reads.
        return [
          key,
          label,
          `OPENAI_BASE_URL="${endpoint.openaiConfig.baseUrl}"\nOPENAI_API_KEY="$SWITCHYARD_API_KEY"\n# model: ${endpoint.openaiConfig.model}`,
        ];
      }
      return null;
    }).filter(Boolean);
  }

  #codeView(endpoint) {
    const tabs = this.#sampleTabs(endpoint);
    const current = tabs.find(([key]) => key === this.#codeTab) ?? tabs[0];
    const code = h('pre', { tabindex: '0', role: 'tabpanel', id: 'code-panel', 'aria-labelledby': `tab-${current?.[0]}` }, h('code', { text: current?.[2] ?? '' }));
    const selectTab = (key, focus) => {
      this.#codeTab = key;
      this.#renderBody();
      if (focus) this.#parts.body.querySelector(`#tab-${key}`)?.focus();
    };
    const tablist = h(
      'div',
      {
        class: 'tabs',
        role: 'tablist',
        'aria-label': 'Code samples',
        onkeydown: (event) => {
          const keys = tabs.map(([key]) => key);
          const at = keys.indexOf(this.#codeTab);
          let next = null;
          if (event.key === 'ArrowRight') next = keys[(at + 1) % keys.length];
          if (event.key === 'ArrowLeft') next = keys[(at - 1 + keys.length) % keys.length];
          if (event.key === 'Home') next = keys[0];
          if (event.key === 'End') next = keys.at(-1);
          if (next) {
            event.preventDefault();
            selectTab(next, true);
          }
        },
      },
      tabs.map(([key, label]) =>
        h('button', {
          type: 'button',
          role: 'tab',
          class: 'tab',
          id: `tab-${key}`,
          'data-sample': key,
          'aria-selected': key === current?.[0] ? 'true' : 'false',
          'aria-controls': 'code-panel',
          tabindex: key === current?.[0] ? '0' : '-1',
          text: label,
          onclick: () => selectTab(key, true),
        }),
      ),
    );
    return h(
      'div',
      { class: 'code-view', role: 'region', 'aria-label': `Code samples for ${endpoint.name}` },
      h(
        'div',
        { class: 'code-head' },
        h('button', { type: 'button', class: 'btn back', text: '← Back', 'aria-label': 'Back to the endpoint list', onclick: () => this.#backToList() }),
        h('span', { class: 'code-title', text: endpoint.name }),
      ),
      h(
        'p',
        { class: 'config' },
        'OpenAI base URL ',
        h('code', { text: endpoint.openaiConfig?.baseUrl ?? '' }),
        ' · model ',
        h('code', { text: endpoint.openaiConfig?.model ?? '' }),
      ),
      tablist,
      code,
      h(
        'div',
        { class: 'code-actions' },
        h('a', { class: 'btn', href: endpoint.manage_url, target: '_blank', rel: 'noopener', text: 'Manage ↗' }),
        h('button', {
          type: 'button',
          class: 'btn copy-code',
          text: 'Copy code',
          onclick: (event) => this.#copy(event.currentTarget, current?.[2] ?? '', 'Code copied'),
        }),
        h('button', { type: 'button', class: 'btn use', text: 'Use this endpoint', onclick: () => this.#select(endpoint) }),
      ),
    );
  }
}

if (!customElements.get('switchyard-connect')) {
  customElements.define('switchyard-connect', SwitchyardConnect);
}
