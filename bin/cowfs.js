#!/usr/bin/env node
// The built CLI (npm run build, or scripts/setup.sh).
import '../dist/src/cli/main.js';
