/**
 * VS Code's workbench in headless Chromium, driven as a user drives it: keyboard shortcuts
 * (Ctrl+P, Ctrl+G, F9, F5, Shift+F5, F1), the quick input, and what the views show. Every
 * wait names what it waited for, so a failure says which step of the user's path broke.
 *
 * The selectors are VS Code's own CSS classes (stable across releases for years:
 * `.debug-variables`, `.repl`, `.quick-input-widget`, `.codicon-debug-breakpoint`); if a
 * future code-server renames one, the failing step and its screenshot show which.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.KBRIDGE_CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 60000;

/** Why Chromium cannot run here, or `false` when it can. */
function whyNoChromium() {
  return fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set KBRIDGE_CHROMIUM)`;
}

/** Collapses the whitespace VS Code's rendering puts between a name and its value. */
function flat(text) {
  return text.replace(/\s+/g, ' ').trim();
}

/** A regular expression matching `text` literally. */
function literal(text) {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}

class Workbench {
  /** Opens `folder` in the code-server at `url`, in a new headless Chromium. */
  static async open(url, folder) {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage', '--disable-gpu'],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const workbench = new Workbench(browser, page);
    await page.goto(`${url}/?folder=${encodeURIComponent(folder)}`);
    await workbench.visible('.monaco-workbench .part.editor', 'the workbench');
    // The explorer lists the folder once the workspace is up.
    await workbench.visible('.explorer-folders-view .monaco-list-row', 'the folder in the explorer');
    return workbench;
  }

  constructor(browser, page) {
    this.browser = browser;
    this.page = page;
  }

  async close() {
    await this.browser.close();
  }

  async visible(selector, what, timeout = STEP_MS) {
    try {
      await this.page.locator(selector).first().waitFor({ state: 'visible', timeout });
    } catch (error) {
      throw new Error(`VS Code did not show ${what} (${selector}) within ${timeout} ms`, { cause: error });
    }
  }

  /** Waits until the text of `selector` matches `pattern`; resolves with the text. */
  async textMatching(selector, pattern, what, timeout = STEP_MS) {
    const deadline = Date.now() + timeout;
    let last = '';
    while (Date.now() < deadline) {
      const texts = await this.page.locator(selector).allInnerTexts();
      last = flat(texts.join(' '));
      if (pattern.test(last)) return last;
      await this.page.waitForTimeout(200);
    }
    throw new Error(`VS Code did not show ${what} (${pattern} in ${selector}) within ${timeout} ms; it showed: ${last}`);
  }

  async press(keys) {
    await this.page.keyboard.press(keys);
  }

  /** Ctrl+P, the file's name, Enter; waits for its editor tab. */
  async openFile(name) {
    await this.press('Control+P');
    await this.quickInput(name, `Quick Open for ${name}`, { choose: literal(name) });
    await this.visible(`.tabs-container .tab.active[aria-label^="${name}"]`, `the editor tab of ${name}`);
  }

  /** Ctrl+G, the line number, Enter. */
  async goToLine(line) {
    await this.press('Control+G');
    await this.quickInput(String(line), `Go to Line ${line}`, { choose: new RegExp(`\\b${line}\\b`) });
  }

  /** F9 on the cursor's line; waits for the red dot in the gutter. */
  async toggleBreakpoint() {
    const dots = this.page.locator('.monaco-editor .codicon-debug-breakpoint');
    const before = await dots.count();
    await this.press('F9');
    const deadline = Date.now() + 10000;
    while ((await dots.count()) <= before) {
      if (Date.now() > deadline) throw new Error('F9 put no breakpoint in the gutter');
      await this.page.waitForTimeout(100);
    }
  }

  /** Waits for the call stack's "Paused on breakpoint" and the editor's stopped line. */
  async waitPausedOnBreakpoint(timeout = STEP_MS) {
    // The state is shown in the Call Stack view's header, next to its title.
    await this.textMatching('.part.sidebar .pane-header', /Paused on breakpoint/, '"Paused on breakpoint" in the Call Stack', timeout);
    await this.visible('.monaco-editor .codicon-debug-stackframe', 'the stopped line in the editor', timeout);
  }

  /** The Variables view's text once it shows `name = value` (value a regular expression source). */
  async variable(name, valuePattern) {
    const pattern = new RegExp(`\\b${name} = ${valuePattern}`);
    const text = await this.textMatching('.debug-variables .monaco-list-row', pattern, `${name} in the Variables view`);
    return text.match(pattern)[0];
  }

  /** Types `expression` into the Debug Console's input and waits for output matching `pattern`. */
  async evaluate(expression, pattern) {
    await this.visible('.repl-input-wrapper', 'the Debug Console input');
    await this.page.locator('.repl-input-wrapper .monaco-editor').first().click();
    await this.page.keyboard.type(expression);
    await this.press('Enter');
    return this.textMatching('.repl .monaco-list-row', pattern, `the result of ${expression} in the Debug Console`);
  }

  /** Waits until no debug session is left: the debug toolbar is gone. */
  async waitSessionEnded(timeout = STEP_MS) {
    try {
      await this.page.locator('.debug-toolbar').waitFor({ state: 'hidden', timeout });
    } catch (error) {
      throw new Error(`the debug session did not end within ${timeout} ms`, { cause: error });
    }
  }

  /** F1, the command's title, Enter. */
  async runCommand(title) {
    await this.press('F1');
    await this.quickInput(title, `the command palette for "${title}"`, { choose: literal(title) });
  }

  /**
   * Types into the quick input once it is open and, if `choose` is given, waits for the
   * list to show that item first (the list fills asynchronously: Enter before that would
   * accept nothing); Enter accepts.
   */
  async quickInput(text, what, { choose, replace = false } = {}) {
    await this.visible('.quick-input-widget .quick-input-box input', what);
    const input = this.page.locator('.quick-input-widget .quick-input-box input').first();
    if (replace) await input.fill('');
    await this.page.keyboard.type(text);
    if (choose) {
      await this.textMatching('.quick-input-widget .quick-input-list .monaco-list-row', choose, `${choose} offered in ${what}`);
    }
    await this.press('Enter');
  }

  /** Waits for the quick input's title to match `pattern` (the next question of a dialogue). */
  async quickInputTitled(pattern, what) {
    return this.textMatching('.quick-input-widget .quick-input-title', pattern, what);
  }

  /** Waits for a notification toast whose text matches `pattern`. */
  async notification(pattern, what) {
    return this.textMatching('.notifications-toasts .notification-list-item', pattern, what);
  }

  /** Keeps what a failing step left on screen: a screenshot and the Debug Console's text. */
  async keepEvidence(dir, name) {
    fs.mkdirSync(dir, { recursive: true });
    const shot = path.join(dir, `${name}.png`);
    await this.page.screenshot({ path: shot }).catch(() => {});
    const repl = await this.page.locator('.repl .monaco-list-row').allInnerTexts().catch(() => []);
    fs.writeFileSync(path.join(dir, `${name}.debug-console.txt`), repl.join('\n'));
    return shot;
  }
}

module.exports = { Workbench, whyNoChromium };
