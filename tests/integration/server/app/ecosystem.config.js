// PM2 processes of the ai-admin test fixture (names as in production).
module.exports = {
  apps: [
    { name: 'ai-admin-api', script: 'app.js', cwd: '/opt/ai-admin', env: { PORT: '3000' } },
    { name: 'ai-admin-worker-v2', script: 'app.js', cwd: '/opt/ai-admin', env: { PORT: '3001' } },
  ],
};
