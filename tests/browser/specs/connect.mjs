// <switchyard-connect> on a page of another origin: a small node http server on
// 127.0.0.1:SY_PAGE_PORT (an origin the Rust harness lists in
// --cors-allowed-origins) serves a host page that loads `${env.url}/connect.js`
// and gives the element `server` and `token`.
import assert from 'node:assert/strict';
import http from 'node:http';
import { createEndpoint } from '../lib.mjs';

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function hostPage(env, token, { attribute = true } = {}) {
  const tokenAttribute = attribute ? ` token="${escapeHtml(token)}"` : '';
  const tokenProperty = attribute ? '' : `picker.token = ${JSON.stringify(token)};`;
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <title>Acme Notebook</title>
  <script type="module" src="${escapeHtml(env.url)}/connect.js"></script>
  <style>
    body { font-family: system-ui, sans-serif; margin: 0; background: #f1f5f9; color: #0f172a; }
    header { background: #0f172a; color: #fff; padding: 14px 24px; font-weight: 700; }
    main { padding: 24px; max-width: 760px; }
    .card { background: #fff; border: 1px solid #e2e8f0; border-radius: 12px; padding: 20px; min-height: 560px; }
    #log { font-size: 12px; white-space: pre-wrap; color: #475569; }
  </style>
</head>
<body>
  <header>Acme Notebook</header>
  <main>
    <div class="card">
      <h1>Choose the model for this notebook</h1>
      <p>Your Switchyard endpoints, from ${escapeHtml(env.url)}.</p>
      <switchyard-connect id="picker" server="${escapeHtml(env.url)}"${tokenAttribute}
        show-quick-actions placeholder="Choose a model"></switchyard-connect>
      <p id="log">No endpoint connected yet.</p>
    </div>
  </main>
  <script type="module">
    const picker = document.getElementById('picker');
    ${tokenProperty}
    window.connectEvents = [];
    picker.addEventListener('connect', (event) => {
      window.connectEvents.push(event.detail);
      document.getElementById('log').textContent =
        'Connected: ' + event.detail.modelName + ' at ' + event.detail.openaiConfig.baseUrl;
    });
  </script>
</body>
</html>`;
}

async function startPageServer(env, pages) {
  const server = http.createServer((request, response) => {
    const path = new URL(request.url, 'http://localhost').pathname;
    const page = pages[path];
    if (!page) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(env.pagePort), '127.0.0.1', resolve);
  });
  return server;
}

/// The element's shadow-DOM state, read in the page.
async function widgetState(page) {
  return page.evaluate(() => {
    const picker = document.getElementById('picker');
    const root = picker.shadowRoot;
    const search = root.querySelector('input[role=combobox]');
    const active = search.getAttribute('aria-activedescendant');
    return {
      expanded: root.querySelector('.trigger').getAttribute('aria-expanded'),
      panelHidden: root.querySelector('.panel').hidden,
      label: root.querySelector('.trigger-label').textContent,
      groups: [...root.querySelectorAll('.group-header')].map((header) => header.textContent),
      options: [...root.querySelectorAll('[role=option] .name')].map((name) => name.textContent),
      activeName: active ? root.getElementById(active)?.querySelector('.name')?.textContent : null,
      focus: root.activeElement ? root.activeElement.className || root.activeElement.tagName : null,
      hostFocused: document.activeElement === picker,
      connectedId: picker.getAttribute('connected-endpoint-id'),
    };
  });
}

export default async function ({ page, env, shot, step, newPage }) {
  assert.ok(env.pagePort, 'SY_PAGE_PORT is set by the Rust harness');
  const pageOrigin = `http://127.0.0.1:${env.pagePort}`;
  const created = await step('create a chat, a second chat and an embedding endpoint through the API', async () => {
    const chat = await createEndpoint(env, { name: 'support-chat', modality: 'llm' });
    const summarizer = await createEndpoint(env, { name: 'summarizer', modality: 'llm' });
    const embedding = await createEndpoint(env, { name: 'doc-embeddings', modality: 'embedding' });
    return { chat: chat.endpoint, summarizer: summarizer.endpoint, embedding: embedding.endpoint };
  });

  const pageServer = await startPageServer(env, {
    '/': hostPage(env, env.token),
    '/property': hostPage(env, env.token, { attribute: false }),
    '/empty': hostPage(env, env.secondToken, { attribute: false }),
    '/refused': hostPage(env, 'sym_not-a-valid-token-000000000000'),
  });
  try {
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: pageOrigin });

    await step('the host page on another origin loads the widget', async () => {
      await page.goto(`${pageOrigin}/`);
      await page.waitForFunction(() => customElements.get('switchyard-connect') !== undefined);
      const state = await widgetState(page);
      assert.equal(state.label, 'Choose a model');
      assert.equal(state.expanded, 'false');
      await shot('closed');
    });

    await step('the dropdown lists the endpoints grouped by modality', async () => {
      await page.click('switchyard-connect .trigger');
      await page.waitForSelector('switchyard-connect [role=option]');
      const state = await widgetState(page);
      assert.equal(state.expanded, 'true');
      assert.deepEqual(state.groups, ['Language models', 'Embeddings']);
      // Newest first within a group.
      assert.deepEqual(state.options, ['summarizer', 'support-chat', 'doc-embeddings']);
      assert.equal(state.focus, 'INPUT', 'the search box has the focus');
      const firstRow = page.locator('switchyard-connect .row').first();
      assert.equal(await firstRow.locator('.badge.provider').textContent(), 'external');
      assert.match(await firstRow.locator('.sr-only').textContent(), /^Status: \w+/);
      assert.equal(await page.locator('switchyard-connect [role=listbox]').getAttribute('aria-label'), 'Endpoints');
      await shot('open');
    });

    await step('search narrows the list and says when nothing matches', async () => {
      const search = page.locator('switchyard-connect input[role=combobox]');
      await search.fill('embed');
      assert.deepEqual((await widgetState(page)).options, ['doc-embeddings']);
      await search.fill('no-such-model');
      assert.match(await page.locator('switchyard-connect .no-match').textContent(), /No endpoints match “no-such-model”/);
      await search.fill('');
      assert.equal((await widgetState(page)).options.length, 3);
    });

    await step('keyboard: arrows, Home and End move, Enter selects and focus returns to the button', async () => {
      await page.keyboard.press('End');
      assert.equal((await widgetState(page)).activeName, 'doc-embeddings');
      await page.keyboard.press('Home');
      assert.equal((await widgetState(page)).activeName, 'summarizer');
      await page.keyboard.press('ArrowDown');
      assert.equal((await widgetState(page)).activeName, 'support-chat');
      await page.keyboard.press('ArrowDown');
      await page.keyboard.press('ArrowDown');
      assert.equal((await widgetState(page)).activeName, 'doc-embeddings', 'ArrowDown stops at the last option');
      await page.keyboard.press('ArrowUp');
      assert.equal((await widgetState(page)).activeName, 'support-chat');
      await page.keyboard.press('Enter');
      const state = await widgetState(page);
      assert.equal(state.panelHidden, true);
      assert.equal(state.expanded, 'false');
      assert.equal(state.label, 'support-chat');
      assert.equal(state.connectedId, created.chat.id);
      assert.ok(state.hostFocused && state.focus === 'trigger', `focus is on the button (${state.focus})`);
    });

    await step('the connect event carries the endpoint, its OpenAI config and samples', async () => {
      const events = await page.evaluate(() => window.connectEvents);
      assert.equal(events.length, 1);
      const detail = events[0];
      assert.equal(detail.endpointId, created.chat.id);
      assert.equal(detail.url, `${env.url}/api/v1/inference/${created.chat.id}`);
      assert.equal(detail.modelName, 'support-chat');
      assert.equal(detail.modality, 'llm');
      assert.equal(detail.provider, 'external');
      assert.equal(detail.status, created.chat.status);
      assert.deepEqual(detail.openaiConfig, { baseUrl: `${env.url}/v1`, model: 'support-chat' });
      assert.match(detail.samples.python, /from openai import OpenAI/);
      assert.ok(detail.samples.curl.includes(`${env.url}/v1/chat/completions`));
      assert.equal(await page.locator('#log').textContent(), `Connected: support-chat at ${env.url}/v1`);
      // The event bubbles out of the shadow root to the document.
      const bubbled = await page.evaluate(
        () =>
          new Promise((resolve) => {
            document.addEventListener('connect', (event) => resolve(event.composed && event.bubbles), { once: true });
            const root = document.getElementById('picker').shadowRoot;
            root.querySelector('.trigger').click();
            setTimeout(() => root.querySelector('[role=option]').click(), 50);
          }),
      );
      assert.equal(bubbled, true);
      assert.equal((await widgetState(page)).label, 'summarizer');
    });

    await step('Escape closes the dropdown and gives the focus back to the button', async () => {
      await page.keyboard.press('ArrowDown');
      let state = await widgetState(page);
      assert.equal(state.expanded, 'true');
      assert.equal(state.activeName, 'summarizer', 'the connected endpoint is active on open');
      await page.keyboard.press('Escape');
      state = await widgetState(page);
      assert.equal(state.panelHidden, true);
      assert.equal(state.focus, 'trigger');
    });

    await step('copy URL puts the endpoint URL on the clipboard', async () => {
      await page.click('switchyard-connect .trigger');
      const row = page.locator('switchyard-connect .row', { hasText: 'doc-embeddings' });
      await row.locator('.copy-url').click();
      await page.waitForFunction(() =>
        [...document.getElementById('picker').shadowRoot.querySelectorAll('.copy-url')].some((b) => b.textContent === 'Copied'),
      );
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(copied, `${env.url}/api/v1/inference/${created.embedding.id}`);
    });

    await step('code samples in four tabs, switched by click and by arrow keys', async () => {
      const row = page.locator('switchyard-connect .row', { hasText: 'support-chat' });
      await row.locator('.view-code').click();
      const tabs = page.locator('switchyard-connect [role=tab]');
      assert.deepEqual(await tabs.allTextContents(), ['Python', 'TypeScript', 'cURL', 'OpenAI SDK compatible']);
      const code = page.locator('switchyard-connect pre');
      assert.match(await code.textContent(), /from openai import OpenAI/);
      assert.match(await page.locator('switchyard-connect .config').textContent(), new RegExp(`${env.url}/v1`));
      await page.locator('switchyard-connect [role=tab]', { hasText: 'TypeScript' }).click();
      assert.match(await code.textContent(), /import OpenAI from "openai"/);
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.locator('switchyard-connect [role=tab][aria-selected=true]').textContent(), 'cURL');
      assert.match(await code.textContent(), /^curl /);
      await page.keyboard.press('ArrowRight');
      assert.match(await code.textContent(), /OPENAI_BASE_URL/);
      await shot('code-samples');
      await page.locator('switchyard-connect .copy-code').click();
      assert.match(await page.evaluate(() => navigator.clipboard.readText()), /OPENAI_BASE_URL/);
      await page.keyboard.press('Escape');
      assert.equal((await widgetState(page)).options.length, 3, 'Escape goes back to the list');
      await page.keyboard.press('Escape');
      assert.equal((await widgetState(page)).panelHidden, true);
    });

    await step('Tab reaches the active endpoint quick actions; manage links to the dashboard', async () => {
      await page.click('switchyard-connect .trigger');
      await page.keyboard.press('Tab');
      let state = await widgetState(page);
      assert.match(state.focus, /copy-url/);
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      state = await widgetState(page);
      assert.match(state.focus, /manage/);
      const manage = page.locator('switchyard-connect .row.active .manage');
      assert.equal(await manage.getAttribute('href'), `${env.url}/endpoints/${created.summarizer.id}`);
      await page.keyboard.press('Escape');
      assert.equal((await widgetState(page)).focus, 'trigger');
    });

    await step('the token can be given as a property', async () => {
      const other = await newPage({ label: 'property page' });
      await other.goto(`${pageOrigin}/property`);
      await other.click('switchyard-connect .trigger');
      await other.waitForSelector('switchyard-connect [role=option]');
      assert.equal((await widgetState(other)).options.length, 3);
      assert.equal(await other.locator('switchyard-connect').getAttribute('token'), null, 'the token stays out of the DOM');
      await other.context().close();
    });

    await step('a user without endpoints sees the empty state with a link to deploy', async () => {
      const empty = await newPage({ label: 'empty page' });
      await empty.goto(`${pageOrigin}/empty`);
      await empty.click('switchyard-connect .trigger');
      await empty.waitForSelector('switchyard-connect .message.empty');
      assert.match(await empty.locator('switchyard-connect .message.empty').textContent(), /No endpoints yet/);
      assert.equal(await empty.locator('switchyard-connect .deploy-link').getAttribute('href'), `${env.url}/deploy`);
      await shot('empty', empty);
      let state = await widgetState(empty);
      assert.match(state.focus, /deploy-link/, 'nothing to search: the focus is on the deploy link');
      await empty.keyboard.press('Escape');
      state = await widgetState(empty);
      assert.equal(state.panelHidden, true);
      assert.equal(state.focus, 'trigger');
      await empty.context().close();
    });

    await step('a refused token shows the server message and a retry button', async () => {
      const refused = await newPage({ label: 'refused page', allowConsole: [/status of 401/] });
      await refused.goto(`${pageOrigin}/refused`);
      await refused.click('switchyard-connect .trigger');
      await refused.waitForSelector('switchyard-connect .message.error');
      const text = await refused.locator('switchyard-connect .error-text').textContent();
      assert.ok(text.length > 0 && !/Cannot reach/.test(text), `the server's message is shown: ${text}`);
      assert.equal(await refused.locator('switchyard-connect .retry').count(), 1);
      await shot('error', refused);
      await refused.context().close();
    });

    await step('phone width (390 px): the dropdown fits the screen', async () => {
      const phone = await newPage({ label: 'phone page', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      await phone.goto(`${pageOrigin}/`);
      await phone.click('switchyard-connect .trigger');
      await phone.waitForSelector('switchyard-connect [role=option]');
      const box = await phone.locator('switchyard-connect .panel').boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 390, `panel ${JSON.stringify(box)} fits 390 px`);
      const trigger = await phone.locator('switchyard-connect .trigger').boundingBox();
      assert.ok(trigger.width >= 44 && trigger.height >= 32, 'the button is large enough to tap');
      await shot('phone', phone);
      await phone.context().close();
    });
  } finally {
    await new Promise((resolve) => pageServer.close(resolve));
  }
}
