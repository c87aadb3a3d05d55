// ai-admin test fixture: a tiny Node app shaped like the production one.
// Reads SENTRY_DSN from /opt/ai-admin/.env through dotenv (which does NOT override a
// variable already in the environment: the PM2 saved-env trap) and reports with @sentry/node.
'use strict';
const path = require('path');
require('dotenv').config({ path: path.join(__dirname, '.env') });
const Sentry = require('@sentry/node');

const name = process.env.name || process.env.APP_NAME || 'ai-admin';
Sentry.init({
  dsn: process.env.SENTRY_DSN,
  environment: 'testhost',
  release: 'ai-admin@test',
  serverName: name,
  tracesSampleRate: 0,
});

const http = require('http');

function dsnInfo() {
  try {
    const u = new URL(process.env.SENTRY_DSN || '');
    return { host: u.host, projectId: u.pathname.replace(/^\//, '') };
  } catch (e) {
    return { host: null, projectId: null };
  }
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  res.setHeader('content-type', 'application/json');
  if (url.pathname === '/health') {
    const d = dsnInfo();
    res.end(JSON.stringify({ status: 'ok', process: name, pid: process.pid,
      dsnHost: d.host, dsnProjectId: d.projectId }));
    return;
  }
  if (url.pathname === '/boom') {
    const marker = url.searchParams.get('marker') || 'no-marker';
    let eventId = null;
    try {
      throw new Error(`ai-admin test error ${marker}`);
    } catch (err) {
      eventId = Sentry.captureException(err, { tags: { marker, process: name } });
    }
    const flushed = await Sentry.flush(5000);
    res.statusCode = 500;
    res.end(JSON.stringify({ eventId, marker, flushed, process: name }));
    return;
  }
  res.statusCode = 404;
  res.end('{"error":"not found"}');
});

const port = Number(process.env.PORT || 3000);
server.listen(port, '127.0.0.1', () => {
  console.log(`${name} listening on 127.0.0.1:${port}`);
});
