// The deploy wizard: all four steps for an existing server (env.upstreamUrl),
// ending on the key-once view with a key that works; then a Hugging Face
// model through the recommendation step and a full deploy on the self-hosted
// provider (the Rust harness configures a fake Hub and the fake model server),
// watched live; and the wizard at phone width.
import assert from 'node:assert/strict';
import { signIn } from '../lib.mjs';

const HF_MODEL = 'HuggingFaceTB/SmolLM2-135M-Instruct';

async function currentStep(page) {
  return page.$eval('#steps [aria-current="step"]', (item) => Number(item.dataset.step));
}

async function chat(env, key, model) {
  const response = await fetch(`${env.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 }),
  });
  return response.status;
}

export default async function ({ page, env, shot, step, newPage }) {
  await step('sign in', () => signIn(page, env));

  await step('step 1: an existing server, with validation', async () => {
    await page.goto(`${env.url}/deploy`);
    assert.equal(await currentStep(page), 1);
    await shot('1-source');
    await page.check('input[name="source"][value="existing"]');
    assert.equal(await page.isVisible('#ext-base'), true);
    assert.equal(await page.isVisible('#hf-model'), false);
    // Next without a URL: the field says what is wrong and keeps focus.
    await page.click('#wizard-next');
    await page.waitForSelector('#ext-base-error:not([hidden])');
    assert.equal(await page.getAttribute('#ext-base', 'aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'ext-base');
    assert.equal(await currentStep(page), 1);
    await page.fill('#ext-base', 'not a url');
    await page.keyboard.press('Enter');
    assert.match(await page.textContent('#ext-base-error'), /absolute http/);
    await shot('1-validation');
    await page.fill('#ext-base', env.upstreamUrl);
    await page.keyboard.press('Enter'); // The form submits on Enter: keyboard users never need the mouse.
    await page.waitForSelector('[data-panel="2"]:not([hidden])');
    assert.equal(await currentStep(page), 2);
  });

  await step('step 2: what applies to a routed server', async () => {
    const text = await page.textContent('#recommendation');
    assert.match(text, /Routed to\s*Your server/);
    assert.match(text, /GPU\s*None/);
    assert.match(text, /credits per 1k input \/ output tokens/);
    await shot('2-recommendation-existing');
    await page.click('#wizard-next');
    await page.waitForSelector('[data-panel="3"]:not([hidden])');
  });

  await step('step 3: configuration', async () => {
    assert.equal(await page.inputValue('#cfg-name'), 'my-server', 'a name is suggested');
    assert.equal(await page.isVisible('#scaling'), false, 'scaling is for deploys only');
    await page.fill('#cfg-name', '-bad name');
    await page.click('#wizard-next');
    await page.waitForSelector('#cfg-name-error:not([hidden])');
    await page.fill('#cfg-name', 'browser-server');
    await page.fill('#cfg-timeout', '60');
    await page.fill('#cfg-description', 'Connected by the browser test');
    await shot('3-configuration');
    await page.click('#wizard-next');
    await page.waitForSelector('[data-panel="4"]:not([hidden])');
  });

  let key;
  await step('step 4: review, create, and the key shown once', async () => {
    const review = await page.textContent('#review');
    assert.ok(review.includes(env.upstreamUrl), review);
    assert.match(review, /browser-server/);
    assert.match(review, /60 s/);
    assert.equal((await page.textContent('#wizard-next')).trim(), 'Create endpoint');
    await shot('4-review');
    await page.click('#wizard-next');
    await page.waitForSelector('#done-view:not([hidden])');
    key = (await page.textContent('#new-key')).trim();
    assert.match(key, /^sy_live_/);
    assert.match(await page.textContent('#done-endpoint-url'), /\/api\/v1\/inference\//);
    assert.equal((await page.textContent('#done-base-url')).trim(), `${env.url}/v1`);
    assert.equal(await page.getAttribute('#copy-key', 'data-copy'), key);
    await page.waitForSelector('#done-samples [role="tab"]');
    assert.match(await page.textContent('#done-samples'), /browser-server/);
    assert.equal(await chat(env, key, 'browser-server'), 200, 'the new key works');
    await shot('5-key-once');
  });

  await step('a Hugging Face model: the recommendation', async () => {
    await page.goto(`${env.url}/deploy`);
    await page.fill('#hf-model', 'not a model');
    await page.click('#wizard-next');
    await page.waitForSelector('#hf-model-error:not([hidden])');
    await page.fill('#hf-model', `https://huggingface.co/${HF_MODEL}`);
    await page.fill('#hf-requests', '5000');
    await page.click('#wizard-next');
    await page.waitForSelector('#choices');
    const text = await page.textContent('#recommendation');
    assert.match(text, /134\.5M/);
    assert.match(text, /Cost per request/);
    assert.match(text, /Monthly estimate/);
    assert.match(text, /5,000 requests\/day/);
    assert.match(text, /Cold start/);
    const options = await page.$$eval('input[name="choice"]', (radios) => radios.map((radio) => ({ value: radio.value, disabled: radio.disabled })));
    assert.ok(options.length >= 2, JSON.stringify(options));
    assert.ok(options.some((option) => option.value === 'best'), 'the recommendation is listed');
    assert.ok(options.some((option) => option.value.startsWith('alt-')), 'and its alternatives');
    // No cloud provider is configured here: only the self-hosted machine can run it.
    assert.ok(options.filter((option) => option.value !== 'self-hosted').every((option) => option.disabled));
    assert.equal(await page.isChecked('input[name="choice"][value="self-hosted"]'), true);
    assert.match(await page.textContent('.availability'), /RUNPOD_API_KEY/);
    await page.click('.availability summary');
    await shot('2-recommendation-hf');
  });

  await step('a Hugging Face model: configure, review, deploy and watch', async () => {
    await page.click('#wizard-next');
    await page.waitForSelector('[data-panel="3"]:not([hidden])');
    assert.equal(await page.inputValue('#cfg-name'), 'smollm2-135m-instruct');
    assert.equal(await page.isVisible('#scaling'), true);
    await page.fill('#cfg-name', 'smol');
    await page.fill('#cfg-min', '2');
    await page.fill('#cfg-max', '1');
    await page.click('#wizard-next');
    await page.waitForSelector('#cfg-min-error:not([hidden])');
    await page.fill('#cfg-min', '0');
    await page.click('#wizard-next');
    await page.waitForSelector('[data-panel="4"]:not([hidden])');
    assert.match(await page.textContent('#review'), /Self-hosted/);
    assert.equal((await page.textContent('#wizard-next')).trim(), 'Deploy');
    await shot('4-review-hf');
    await page.click('#wizard-next');
    await page.waitForSelector('#progress-view:not([hidden])');
    await page.waitForSelector('#stages li');
    await shot('6-progress');
    await page.waitForSelector('#done-view:not([hidden])', { timeout: 60000 });
    const stages = await page.$$eval('#stages li.done', (items) => items.map((item) => item.dataset.stage));
    assert.ok(stages.includes('ready'), stages.join());
    assert.equal(await page.getAttribute('#progress-bar', 'value'), '100');
    const hfKey = (await page.textContent('#new-key')).trim();
    assert.match(hfKey, /^sy_live_/);
    assert.equal(await page.isHidden('#key-missing'), true);
    assert.equal(await chat(env, hfKey, 'smol'), 200, 'the deployed endpoint answers with its key');
    await page.waitForSelector('#done-samples [role="tab"]');
    await shot('7-deployed');
  });

  await step('phone width', async () => {
    const phone = await newPage({ label: 'phone', viewport: { width: 390, height: 844 } });
    await signIn(phone, env);
    await phone.goto(`${env.url}/deploy`);
    await phone.check('input[name="source"][value="api"]');
    await phone.selectOption('#api-provider', 'anthropic');
    assert.equal(await phone.inputValue('#api-base'), 'https://api.anthropic.com/v1', 'the base URL is prefilled');
    await phone.selectOption('#api-provider', 'azure');
    assert.equal(await phone.isVisible('#api-version'), true, 'Azure asks for the api-version');
    const { width, widest } = await phone.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      widest: [...document.querySelectorAll('body *')]
        .filter((element) => element.getBoundingClientRect().right > 391)
        .slice(0, 5)
        .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}`),
    }));
    assert.ok(width <= 390, `no horizontal scrolling (${width}px): ${widest.join(', ')}`);
    await shot('phone-390', phone);
  });
}
