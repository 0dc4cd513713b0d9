# One image for the API, the worker and the migration step (docker-compose.yml picks the command).
# Built to JavaScript and run by node itself: no npm or tsx between the init process and the app, so SIGTERM
# (docker stop) reaches the app once and it shuts down gracefully. Run it with an init (`docker run --init`,
# compose `init: true`) so that PID 1 reaps zombies and forwards signals.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
# postinstall generates the Prisma client (offline: the schema engine binary is node itself, see package.json).
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build:admin && npm run build

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
EXPOSE 3000
CMD ["node", "dist/api/main.js"]
