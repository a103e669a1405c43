// The endpoint page: sign in, create an endpoint on the fake upstream through
// the JSON API, walk every tab, create a key (shown once, copied), call the
// gateway with it from node, see the usage chart count the calls, revoke the
// key through the confirm dialog, change settings (and see the server's field
// error), terminate another endpoint, and take screenshots (also at 390 px).
import assert from 'node:assert/strict';
import { signIn, createEndpoint } from '../lib.mjs';

const NAME = 'detail-demo';

// The sign-in page (templates/login.html) has no <link rel="icon">, so Chromium
// asks for /favicon.ico and logs its 404 as a console error. Reported to the
// lead; until login.html carries the same data: icon as base.html, answer it here.
async function quietFavicon(page) {
  await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204, body: '' }));
}

async function openTab(page, env, id, tab, extra = '') {
  await page.goto(`${env.url}/endpoints/${id}?tab=${tab}${extra}`);
  const current = page.locator(`#tab-${tab}`);
  assert.equal(await current.getAttribute('aria-selected'), 'true');
  assert.equal(await current.getAttribute('aria-current'), 'page');
}

async function clipboard(page) {
  return page.evaluate(() => navigator.clipboard.readText());
}

async function chat(env, key, model) {
  const response = await fetch(`${env.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 }),
  });
  await response.text();
  return response.status;
}

export default async function ({ page, env, shot, step, newPage }) {
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.url });

  await quietFavicon(page);
  await step('sign in', () => signIn(page, env));

  const { endpoint } = await step('create an endpoint through the API', () => createEndpoint(env, { name: NAME }));
  const id = endpoint.id;

  await step('overview: connection info with copy buttons, scaling, stats, samples', async () => {
    await openTab(page, env, id, 'overview');
    assert.equal(await page.locator('h1').first().innerText().then((t) => t.startsWith(NAME)), true);
    const endpointUrl = `${env.url}/api/v1/inference/${id}`;
    assert.equal(await page.locator('#endpoint-url').innerText(), endpointUrl);
    assert.equal(await page.locator('#openai-base-url').innerText(), `${env.url}/v1`);
    assert.equal(await page.locator('#model-name').innerText(), NAME);
    await page.click('button[aria-label="Copy endpoint URL"]');
    await page.locator('button[aria-label="Copy endpoint URL"]', { hasText: 'Copied' }).waitFor();
    assert.equal(await clipboard(page), endpointUrl);
    assert.equal(await page.locator('#stat-requests').innerText(), '0');
    assert.equal(await page.locator('.samples [role="tab"]').count(), 4);
    await page.click('.samples [role="tab"]:has-text("cURL")');
    assert.match(await page.locator('.samples [role="tabpanel"]:not([hidden]) code').innerText(), /chat\/completions/);
    await shot('overview');
  });

  const before = await step('usage: four server-rendered charts, period selector', async () => {
    await openTab(page, env, id, 'usage');
    assert.equal(await page.locator('svg.chart[role="img"]').count(), 4);
    assert.equal(await page.locator('.segment[aria-current="page"]').innerText(), '24 hours');
    await page.click('.segment:has-text("7 days")');
    await page.waitForURL(/period=week/);
    assert.equal(await page.locator('.segment[aria-current="page"]').innerText(), '7 days');
    await page.click('.segment:has-text("30 days")');
    await page.waitForURL(/period=month/);
    return Number(await page.locator('#chart-requests').getAttribute('data-total'));
  });
  assert.equal(before, 0);

  const key = await step('keys: create a key, see it once, copy it', async () => {
    await openTab(page, env, id, 'keys');
    await page.fill('#key-name', 'browser-key');
    await page.fill('#key-per-minute', '100');
    await page.fill('#key-per-day', '5000');
    await page.click('#key-create');
    await page.locator('#new-key').waitFor({ state: 'visible' });
    const secret = await page.locator('#new-key-value').innerText();
    assert.match(secret, /^sy_live_/);
    assert.match(await page.locator('#new-key').innerText(), /shown only once/);
    await page.click('#new-key-copy');
    assert.equal(await clipboard(page), secret);
    const row = page.locator('#key-rows tr', { hasText: 'browser-key' });
    await row.waitFor();
    assert.match(await row.innerText(), /100\/min/);
    assert.match(await row.innerText(), new RegExp(secret.slice(0, 12)));
    assert.doesNotMatch(await row.innerText(), new RegExp(secret));
    await shot('keys-new');
    await page.click('#new-key-done');
    assert.equal(await page.locator('#new-key').isHidden(), true);
    assert.equal(await page.locator('#new-key-value').innerText(), '');
    return secret;
  });

  await step('three chat requests with the key, from node', async () => {
    for (let i = 0; i < 3; i += 1) assert.equal(await chat(env, key, NAME), 200);
  });

  await step('usage: the requests chart counts them', async () => {
    let total = 0;
    for (let attempt = 0; attempt < 30 && total < 3; attempt += 1) {
      await page.goto(`${env.url}/endpoints/${id}?tab=usage`);
      total = Number(await page.locator('#chart-requests').getAttribute('data-total'));
      if (total < 3) await page.waitForTimeout(200);
    }
    assert.equal(total, 3);
    assert.equal(await page.locator('#total-requests').innerText(), '3');
    assert.ok(await page.locator('#chart-requests rect.bar').count() >= 1);
    assert.ok(await page.locator('#chart-latency circle').count() >= 1);
    await shot('usage');
  });

  await step('keys: revoke through the confirm dialog', async () => {
    await openTab(page, env, id, 'keys');
    const row = page.locator('#key-rows tr', { hasText: 'browser-key' });
    await row.locator('[data-revoke]').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    assert.match(await page.locator('#confirm-title').innerText(), /Revoke key browser-key/);
    await page.click('#confirm-ok');
    await page.locator('#key-rows tr', { hasText: 'browser-key' }).locator('.badge', { hasText: 'revoked' }).waitFor();
    assert.equal(await row.locator('[data-revoke]').count(), 0);
    assert.equal(await chat(env, key, NAME), 401);
    await shot('keys');
  });

  await step('settings: the server names a wrong field', async () => {
    const errors = await newPage({ label: 'settings errors', allowConsole: [/status of 400/] });
    await quietFavicon(errors);
    await signIn(errors, env);
    await openTab(errors, env, id, 'settings');
    await errors.fill('#max_workers', '0');
    await errors.click('#settings-save');
    await errors.locator('#settings-error').waitFor({ state: 'visible' });
    assert.match(await errors.locator('#settings-error').innerText(), /^max_workers: /);
    assert.equal(await errors.locator('#max_workers').getAttribute('aria-invalid'), 'true');
    await shot('settings-error', errors);
    await errors.context().close();
  });

  await step('settings: save scaling, see it on the overview', async () => {
    await openTab(page, env, id, 'settings');
    await page.fill('#min_workers', '1');
    await page.fill('#max_workers', '3');
    await page.fill('#idle_timeout_seconds', '120');
    await page.fill('#description', 'Browser test endpoint');
    await page.click('#settings-save');
    await page.locator('.toast', { hasText: 'Settings saved' }).waitFor();
    await shot('settings');
    await openTab(page, env, id, 'overview');
    assert.equal(await page.locator('#workers').innerText(), '1 – 3');
    assert.equal(await page.locator('#idle-timeout').innerText(), '2 min');
  });

  await step('health: status, backends, live events', async () => {
    await openTab(page, env, id, 'health');
    assert.match(await page.locator('#health-status').textContent(), /^(healthy|degraded|unhealthy|unknown)$/);
    assert.match(await page.locator('#backends-table').innerText(), /Primary upstream/);
    await page.locator('#live-status.on').waitFor();
    await shot('health');
  });

  await step('phone width: 390 px', async () => {
    const phone = await newPage({ label: 'phone', viewport: { width: 390, height: 844 } });
    await quietFavicon(phone);
    await signIn(phone, env);
    await openTab(phone, env, id, 'overview');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const wide = await phone.evaluate(() => [...document.querySelectorAll('body *')]
      .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 1)
      .slice(0, 5)
      .map((element) => `${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''}.${element.className}`));
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than the screen: ${wide.join(', ')}`);
    await shot('overview-390', phone);
    await openTab(phone, env, id, 'usage');
    await shot('usage-390', phone);
    await phone.context().close();
  });

  await step('terminate another endpoint from its settings', async () => {
    const { endpoint: doomed } = await createEndpoint(env, { name: 'doomed-demo' });
    await openTab(page, env, doomed.id, 'settings');
    await page.click('#terminate');
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.click('#confirm-ok');
    await page.locator('.toast', { hasText: 'doomed-demo terminated' }).waitFor();
    await page.waitForURL((url) => url.pathname === '/endpoints');
  });
}
