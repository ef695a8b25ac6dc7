import { AppError } from '../../../lib/errors';
import { assertSignupOpen, registerDeveloper } from '../../../domain/signup/register';
import { limitHeaders } from '../../limit-headers';
import { publicProcedure } from '../../trpc';
import { registerInput, registerOutput } from './schemas';

/**
 * No key: anyone may call it while SIGNUP_MODE allows. Before the input is read, the mode is
 * checked (off: 403, nothing counted) and the attempt is counted against the client address,
 * so malformed attempts count too.
 */
export const registerProcedure = publicProcedure({ target: 'tenant' })
  .use(async ({ ctx, next }) => {
    assertSignupOpen(ctx.services.env.SIGNUP_MODE);
    const state = await ctx.services.signup.throttle.take(ctx.request.ip);
    if ('unavailable' in state) throw new AppError('UNAVAILABLE', 'sign-up is unavailable for a moment, retry later');
    if (!state.allowed) {
      if (!ctx.res.headersSent) for (const [name, value] of Object.entries(limitHeaders(state))) ctx.res.setHeader(name, value);
      throw new AppError('TOO_MANY_REQUESTS', `too many sign-up attempts from this address (${state.limit} per ${ctx.services.env.SIGNUP_WINDOW_SECONDS} s); retry in ${state.resetSeconds} s`);
    }
    return next();
  })
  .input(registerInput)
  .output(registerOutput)
  .mutation(({ ctx, input }) =>
    registerDeveloper(
      { prisma: ctx.services.db.prisma, mode: ctx.services.env.SIGNUP_MODE },
      { ip: ctx.request.ip, userAgent: ctx.request.userAgent },
      input,
    ),
  );
