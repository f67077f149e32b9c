// Cross-site request forgery with browser-cached basic auth, in Chromium.
// Once the browser has logged in to the site, it attaches those credentials
// on its own to later requests to the site's origin, whichever page sends
// them. Pages of other origins — another port of the same host (same-site)
// and another host (cross-site) — try what an attacker would: an <img>, a
// no-cors fetch, an auto-submitted text/plain form and a plain navigation,
// each of which would create an upload record. The server refuses every one
// that carries the credentials with 403 `forbidden`; the same requests from
// the site's own page get through. A route that lists an origin in
// trusted_origins takes that origin's credentialed CORS request, yet still
// no form.
//
// Chromium keys its HTTP auth cache by top-level site: it attaches cached
// basic auth to subresource requests of same-site pages (any port) and to
// top-level navigations from any site (a form POST, a link), but not to
// subresource requests of cross-site pages (those get basic_auth's 401).
//
// What reached the server is read from Caddy's access log (status, the
// basic_auth user that authenticated the request, Sec-Fetch-Site), not from
// the page: a no-cors page sees no status, and the browser may block a
// response the server did send.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import {
  Scratch, freePort, caddyBinary, bcryptHash, startCaddy, launchChromium, waitFor
} from '../lib/harness.mjs'

const user = 'alice'
const password = 'csrf-' + Math.random().toString(36).slice(2)

let scratch, caddy, browser, site, sameSite, crossSite, accessLog

before(async () => {
  scratch = await Scratch.create()
  const bin = await caddyBinary(scratch)
  const port = await freePort()
  const otherPort = await freePort()
  const hash = await bcryptHash(bin, password)
  site = `http://127.0.0.1:${port}`
  // Another port of the same host is another origin of the same site
  // (Sec-Fetch-Site: same-site): SameSite cookies would not stop it.
  sameSite = `http://127.0.0.1:${otherPort}`
  // localhost is another host: cross-site.
  crossSite = `http://localhost:${otherPort}`
  accessLog = scratch.path('access.log')
  const pages = scratch.path('attacker')
  await mkdir(pages, { recursive: true })
  await writeFile(`${pages}/index.html`, '<!doctype html><title>another origin</title><h1>another origin</h1>\n')
  caddy = await startCaddy(scratch, bin, {
    port,
    sites: `${site} {
	bind 127.0.0.1
	embedded_s3
	log {
		output file ${accessLog}
		format json
	}
	# A CORS preflight carries no credentials: the trusted route answers it
	# itself; everything else needs the login.
	@login not {
		method OPTIONS
		path /trusted/*
	}
	basic_auth @login {
		${user} ${hash}
	}
	handle_path /uploads/* {
		upload
	}
	handle_path /trusted/* {
		header {
			Access-Control-Allow-Origin ${sameSite}
			Access-Control-Allow-Credentials true
			Vary Origin
		}
		@preflight method OPTIONS
		handle @preflight {
			header {
				Access-Control-Allow-Methods "GET, POST, DELETE"
				Access-Control-Allow-Headers Content-Type
			}
			respond 204
		}
		handle {
			upload {
				name trusted
				trusted_origins ${sameSite}
			}
		}
	}
	handle {
		respond "<!doctype html><title>the site</title><h1>the site</h1>" {
			close
		}
	}
}

http://:${otherPort} {
	bind 127.0.0.1
	root * ${pages}
	file_server
}`
  })
  browser = await launchChromium(scratch)
})

after(async () => {
  await scratch?.cleanup()
})

const auth = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')

/** Calls an upload route from the test itself (not the browser). */
async function api (method, path) {
  const res = await fetch(`${site}${path}`, { method, headers: { Authorization: auth } })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

/**
 * A browser context (fresh profile: no credentials cached) that has logged
 * in to the site the way a user does: the first page load is challenged by
 * basic_auth and answered with the user's credentials, which Chromium then
 * keeps for the site's origin and sends on its own from then on.
 */
async function loggedInContext () {
  const context = await browser.newContext()
  const page = await context.newPage()
  const u = new URL(site)
  u.username = user
  u.password = password
  const res = await page.goto(u.href)
  assert.equal(res.status(), 200, 'the login page load')
  await page.close()
  // Proof the credentials are cached: a plain load of the site, without
  // them in the URL, is no longer challenged.
  const check = await context.newPage()
  assert.equal((await check.goto(`${site}/`)).status(), 200, 'a later page load of the site is authenticated')
  await check.close()
  return context
}

/** The access log entries whose URI contains marker (unique per attempt). */
async function logged (marker) {
  const text = await readFile(accessLog, 'utf8').catch(() => '')
  return text.split('\n').filter(Boolean).map(l => JSON.parse(l)).filter(e => e.request?.uri?.includes(marker))
}

/** Waits for the server to have answered the request carrying marker. */
async function served (marker, { method } = {}) {
  return waitFor(`the server to answer ${marker}`, async () => {
    const entries = (await logged(marker)).filter(e => !method || e.request.method === method)
    return entries.length > 0 ? entries : undefined
  }, 30000)
}

/** The header of a logged request, or undefined. */
function header (entry, name) {
  return entry.request.headers?.[name]?.[0]
}

let n = 0
/** A marker for one attempt, carried in its URL so the access log shows it. */
function marker (what) {
  return `attempt=${what}-${++n}-${Math.random().toString(36).slice(2, 8)}`
}

/** (a) An image whose URL creates a record (Companion's GET /s3/params). */
async function imgParams (page, base, m) {
  await page.evaluate(src => {
    const img = document.createElement('img')
    img.src = src
    document.body.append(img)
  }, `${base}/s3/params?filename=a.txt&type=text%2Fplain&${m}`)
}

/** (b) A no-cors fetch with the browser's credentials: the page sees nothing, the server gets it. */
async function noCorsFetch (page, base, m) {
  await page.evaluate(async url => {
    await fetch(url, {
      method: 'POST',
      mode: 'no-cors',
      credentials: 'include',
      headers: { 'Content-Type': 'text/plain' },
      body: JSON.stringify({ filename: 'b.txt', size: 1, type: 'text/plain' })
    }).catch(() => {})
  }, `${base}/?${m}`)
}

/**
 * (c) An auto-submitted text/plain form whose body is JSON: the input's
 * name and value join with "=", which the name hides in a string.
 */
async function textForm (page, base, m) {
  const nav = page.waitForNavigation({ waitUntil: 'load' })
  await page.evaluate(action => {
    const form = Object.assign(document.createElement('form'), { method: 'POST', action, enctype: 'text/plain' })
    const input = Object.assign(document.createElement('input'), {
      type: 'hidden', name: '{"filename":"c.txt","size":1,"type":"text/plain","x":"', value: '"}'
    })
    form.append(input)
    document.body.append(form)
    form.submit()
  }, `${base}/?${m}`)
  await nav
}

/** (d) A navigation to a URL that creates a record, as a link or a redirect makes. */
async function navigateParams (page, base, m) {
  const nav = page.waitForNavigation({ waitUntil: 'load' })
  await page.evaluate(href => { location.href = href }, `${base}/s3/params?filename=d.txt&type=text%2Fplain&${m}`)
  await nav
}

/** A page of origin in the context (which holds the cached credentials). */
async function pageOf (context, origin) {
  const page = await context.newPage()
  assert.equal((await page.goto(`${origin}/`)).status(), 200)
  return page
}

/** The code of the JSON error a navigation (form, link) showed, if any. */
async function shownError (page) {
  try {
    return JSON.parse(await page.locator('body').innerText()).error?.code
  } catch {
    return undefined // basic_auth's 401 has no JSON body
  }
}

const attacks = { img: imgParams, fetch: noCorsFetch, form: textForm, link: navigateParams }

/**
 * Runs attack from page against base and returns the access log entry of
 * the one request it made; a request the browser sent with the cached
 * credentials must have been refused with 403, one without them got
 * basic_auth's 401.
 */
async function attempt (page, what, base) {
  const label = `${new URL(page.url()).origin} ${what} to ${base}`
  const m = marker(what)
  await attacks[what](page, base, m)
  const entries = await served(m)
  assert.equal(entries.length, 1, `${label}: one request reached the server`)
  const [e] = entries
  if (e.user_id) {
    assert.equal(e.user_id, user, label)
    assert.equal(e.status, 403, `${label}: it carried the credentials, so it must be refused`)
  } else {
    assert.equal(e.status, 401, `${label}: sent without credentials`)
  }
  if (what === 'form' || what === 'link') {
    assert.equal(await shownError(page), e.user_id ? 'forbidden' : undefined, label)
  }
  return e
}

test('pages of other origins cannot create uploads with the browser\'s cached basic auth; the site\'s own page can', async () => {
  const context = await loggedInContext()
  try {
    // The requests the browser must have sent with the cached credentials:
    // without them, a 401 would prove nothing about the handler.
    const carries = { [sameSite]: ['img', 'fetch', 'form', 'link'], [crossSite]: ['form', 'link'] }
    for (const [origin, fetchSite] of [[sameSite, 'same-site'], [crossSite, 'cross-site']]) {
      const page = await pageOf(context, origin)
      for (const what of Object.keys(attacks)) {
        const e = await attempt(page, what, `${site}/uploads`)
        assert.equal(header(e, 'Sec-Fetch-Site'), fetchSite, `${origin} ${what}: Sec-Fetch-Site`)
        if (carries[origin].includes(what)) {
          assert.equal(e.user_id, user, `${origin} ${what}: the browser sent the cached credentials`)
        }
        if (what === 'form' || what === 'link') await page.goto(`${origin}/`)
      }
      await page.close()
    }

    // Positive control: the same requests from the site's own page, with
    // the same cached credentials.
    const own = await pageOf(context, site)
    const img = marker('own-img')
    const imgAnswer = own.waitForResponse(r => r.url().includes(img))
    await imgParams(own, `${site}/uploads`, img)
    const [imgEntry] = await served(img)
    assert.equal(header(imgEntry, 'Sec-Fetch-Site'), 'same-origin')
    assert.equal(imgEntry.user_id, user)
    assert.equal(imgEntry.status, 200, 'the same image from the site creates a record')
    const params = await (await imgAnswer).json()
    const rec = await api('GET', `/uploads/${params.id}`)
    assert.equal(rec.status, 200)
    assert.equal(rec.body.filename, 'a.txt')
    assert.equal(rec.body.status, 'pending')

    const link = marker('own-link')
    await navigateParams(own, `${site}/uploads`, link)
    const [linkEntry] = await served(link)
    assert.equal(linkEntry.user_id, user)
    assert.equal(linkEntry.status, 200, 'the same navigation from the site creates a record')
    const shown = JSON.parse(await own.locator('body').innerText())
    assert.equal((await api('GET', `/uploads/${shown.id}`)).body.filename, 'd.txt')
    await own.goto(`${site}/`)

    // The site's own no-cors fetch is authenticated and passes the origin
    // check; its text/plain body is what stops it (415).
    const plain = marker('own-fetch')
    await noCorsFetch(own, `${site}/uploads`, plain)
    const [plainEntry] = await served(plain)
    assert.equal(plainEntry.user_id, user)
    assert.equal(plainEntry.status, 415, 'a text/plain body is not JSON, even from the site')
    // With a JSON body, as the site's client sends it, it creates a record.
    const json = marker('own-json')
    const created = await own.evaluate(async url => {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ filename: 'b.txt', size: 1, type: 'text/plain' })
      })
      return { status: res.status, body: await res.json() }
    }, `${site}/uploads/?${json}`)
    assert.equal(created.status, 201, JSON.stringify(created.body))
    assert.equal((await api('GET', `/uploads/${created.body.id}`)).body.filename, 'b.txt')

    // The site's own form is authenticated and reaches the handler too;
    // a form cannot send JSON (415).
    const form = marker('own-form')
    await textForm(own, `${site}/uploads`, form)
    const [formEntry] = await served(form)
    assert.equal(formEntry.user_id, user)
    assert.equal(formEntry.status, 415)
    assert.equal(await shownError(own), 'unsupported_type')
  } finally {
    await context.close()
  }
})

test('a route that trusts another origin takes its credentialed CORS request, but never a form; other origins stay refused', async () => {
  const context = await loggedInContext()
  try {
    // The trusted origin is same-site, as a page on app.example.com
    // uploading through api.example.com is: Chromium sends it the cached
    // credentials.
    const page = await pageOf(context, sameSite)
    const m = marker('trusted-cors')
    const created = await page.evaluate(async url => {
      const res = await fetch(url, {
        method: 'POST',
        mode: 'cors',
        credentials: 'include',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ filename: 'trusted.txt', size: 1, type: 'text/plain' })
      })
      return { status: res.status, body: await res.json() }
    }, `${site}/trusted/?${m}`)
    const entries = await served(m, { method: 'POST' })
    assert.equal(entries.length, 1)
    assert.equal(header(entries[0], 'Sec-Fetch-Site'), 'same-site')
    assert.equal(header(entries[0], 'Origin'), sameSite)
    assert.equal(entries[0].user_id, user, 'the browser sent the cached credentials')
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const rec = await api('GET', `/trusted/${created.body.id}`)
    assert.equal(rec.status, 200)
    assert.equal(rec.body.filename, 'trusted.txt')
    assert.equal(rec.body.status, 'pending')

    // A GET that names its origin (a CORS fetch) creates a record on the
    // trusted route; the other route trusts no one.
    const corsParams = (base, m) => page.evaluate(async url => {
      try {
        const res = await fetch(url, { mode: 'cors', credentials: 'include' })
        return { status: res.status, body: await res.json() }
      } catch (err) {
        return { error: err.message } // no CORS answer: the page may not read it
      }
    }, `${base}/s3/params?filename=p.txt&type=text%2Fplain&${m}`)
    const get = marker('trusted-get')
    const params = await corsParams(`${site}/trusted`, get)
    const [getEntry] = await served(get)
    assert.equal(header(getEntry, 'Origin'), sameSite)
    assert.equal(getEntry.user_id, user)
    assert.equal(getEntry.status, 200, 'the trusted route takes the trusted origin\'s GET /s3/params')
    assert.equal((await api('GET', `/trusted/${params.body.id}`)).body.filename, 'p.txt')
    const other = marker('untrusted-get')
    await corsParams(`${site}/uploads`, other)
    const [otherEntry] = await served(other)
    assert.equal(header(otherEntry, 'Origin'), sameSite)
    assert.equal(otherEntry.user_id, user)
    assert.equal(otherEntry.status, 403, 'the route without trusted_origins refuses the same request')
    // An image names no origin (no-cors GETs carry no Origin header), so
    // it cannot show it comes from the trusted page: refused as well.
    const img = await attempt(page, 'img', `${site}/trusted`)
    assert.equal(header(img, 'Origin'), undefined)
    assert.equal(img.user_id, user)

    // Trusted or not, a form or a no-cors fetch cannot send JSON: they
    // pass the origin check and the body type stops them.
    const plain = marker('trusted-fetch')
    await noCorsFetch(page, `${site}/trusted`, plain)
    const [plainEntry] = await served(plain)
    assert.equal(plainEntry.user_id, user)
    assert.equal(plainEntry.status, 415)
    const form = marker('trusted-form')
    await textForm(page, `${site}/trusted`, form)
    const [formEntry] = await served(form)
    assert.equal(formEntry.user_id, user)
    assert.equal(formEntry.status, 415)
    assert.equal(await shownError(page), 'unsupported_type')
    await page.close()

    // An origin the route does not list gets 403 with the same credentials.
    const stranger = await pageOf(context, crossSite)
    for (const what of ['form', 'link']) {
      const e = await attempt(stranger, what, `${site}/trusted`)
      assert.equal(e.user_id, user, `${what}: the browser sent the cached credentials`)
      await stranger.goto(`${crossSite}/`)
    }
  } finally {
    await context.close()
  }
})
