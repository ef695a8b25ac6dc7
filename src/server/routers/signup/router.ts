import { router } from '../../trpc';
import { registerProcedure } from './register';

export const signupRouter = router({
  register: registerProcedure,
});
