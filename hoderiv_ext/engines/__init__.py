"""The engines that compute input derivatives, and the one step that chooses between them.

  select     backend -> engine -> algorithm, in one typed step (EngineChoice, NotServed)
  autograd/  the autograd engine: any callable, by torch.autograd / torch.func (the reference path)
  taylor/    the Taylor engine: MLPs in one forward pass of fused kernels (forward Taylor, mixed mode,
             forward-over-reverse)
"""
